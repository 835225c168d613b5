package client

import (
	"slices"
	"sync"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// speakerList is the room's latest `speakers` message.
type speakerList struct {
	mu   sync.Mutex // guards list
	list []signal.Speaker
}

// Speakers returns who speaks in the room now, loudest first, as the
// server last said (empty before its first `speakers`). Every `speakers`
// message also reaches Events.
func (c *Client) Speakers() []signal.Speaker {
	c.speakers.mu.Lock()
	defer c.speakers.mu.Unlock()
	return slices.Clone(c.speakers.list)
}

func (c *Client) applySpeakers(m *signal.Message) {
	c.speakers.mu.Lock()
	defer c.speakers.mu.Unlock()
	c.speakers.list = m.Speakers
}

// AudioLevelID is the header extension id negotiated on s for RFC 6464
// audio levels, or 0 when the server did not take it. A publisher that
// writes its own RTP sets each packet's level with
// pkt.Header.SetExtension(id, []byte{voice<<7 | level}), level in -dBov.
func AudioLevelID(s *webrtc.RTPSender) uint8 {
	for _, e := range s.GetParameters().HeaderExtensions {
		if e.URI == sdp.AudioLevelURI && e.ID > 0 && e.ID < 256 {
			return uint8(e.ID)
		}
	}
	return 0
}
