package client

import (
	"context"
	"fmt"
	"sync"

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

// ownMutes is the server's word on the mute state of this participant's
// published tracks, from its own track_published and track_muted.
type ownMutes struct {
	mu sync.Mutex         // guards m
	m  map[string]ownMute // track id -> state; one entry per publication
}

// ownMute is one published track's mute state as the server last said.
type ownMute struct {
	muted bool
	byAPI bool // the server API set it (track_muted with reason api)
}

// Muted reports whether the server holds this participant's published
// track trackID muted, as it last said, and whether the server API
// muted or unmuted it (rather than this client's own Mute). A client
// that captures media should stop sending a track the API muted; one
// that writes its own samples, as tests do, may go on: the server
// forwards nothing of a muted track. false, false for a track the server
// has not announced.
func (c *Client) Muted(trackID string) (muted, byAPI bool) {
	c.mutes.mu.Lock()
	defer c.mutes.mu.Unlock()
	st := c.mutes.m[trackID]
	return st.muted, st.byAPI
}

// noteOwnMute records the state a track message gives one of this
// participant's own tracks.
func (c *Client) noteOwnMute(m *signal.Message) {
	if m.Participant == nil || m.Track == nil || m.Participant.ID != c.ID() {
		return
	}
	c.mutes.mu.Lock()
	defer c.mutes.mu.Unlock()
	if m.Type == signal.TypeTrackUnpublished {
		delete(c.mutes.m, m.Track.ID)
		return
	}
	if c.mutes.m == nil {
		c.mutes.m = make(map[string]ownMute)
	}
	c.mutes.m[m.Track.ID] = ownMute{muted: m.Track.Muted, byAPI: m.Reason == signal.ReasonAPI}
}
