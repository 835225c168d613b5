package client

import (
	"context"
	"fmt"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// PublishAs is Publish with the source of every track named (camera,
// microphone, screen_share, screen_share_audio): the offer carries each
// new track's source by its mid, and the room sees it in
// track_published. Publish leaves the server's default by kind.
func (c *Client) PublishAs(ctx context.Context, source string, tracks ...webrtc.TrackLocal) ([]*webrtc.RTPSender, error) {
	c.negotiateMu.Lock()
	c.sourceOf = make(map[webrtc.TrackLocal]string, len(tracks))
	for _, t := range tracks {
		c.sourceOf[t] = source
	}
	c.negotiateMu.Unlock()
	return c.Publish(ctx, tracks...)
}

// offerSources names, by mid, the source of each track PublishAs was
// given. The caller holds negotiateMu, after SetLocalDescription.
func (c *Client) offerSources() map[string]string {
	var out map[string]string
	for _, tr := range c.pub.GetTransceivers() {
		if tr.Sender() == nil || tr.Mid() == "" {
			continue
		}
		src, ok := c.sourceOf[tr.Sender().Track()]
		if !ok {
			continue
		}
		if out == nil {
			out = make(map[string]string)
		}
		out[tr.Mid()] = src
	}
	return out
}

// Mute mutes or unmutes one of this participant's published tracks (its
// id from track_published); the server stops forwarding it meanwhile.
func (c *Client) Mute(trackID string, muted bool) error {
	if err := c.Send(&signal.Message{Type: signal.TypeMute, TrackID: trackID, Muted: &muted}); err != nil {
		return fmt.Errorf("client: mute: %w", err)
	}
	return nil
}
