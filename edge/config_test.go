package edge

import (
	"strings"
	"testing"
	"time"
)

// TestConfigNamesBadVariable: every bad value stops the start with an
// error that names its environment variable.
func TestConfigNamesBadVariable(t *testing.T) {
	if err := testConfig().validate(); err != nil {
		t.Fatalf("testConfig().validate() = %v; want nil", err)
	}
	tests := []struct {
		variable string
		edit     func(*Config)
	}{
		{"MEDIA_MAX_ROOMS", func(c *Config) { c.MaxRooms = 0 }},
		{"MEDIA_MAX_ROOM_PARTICIPANTS", func(c *Config) { c.MaxRoomParticipants = -1 }},
		{"MEDIA_MAX_TRACKS_PER_PARTICIPANT", func(c *Config) { c.MaxTracks = 0 }},
		{"MEDIA_MAX_ICE_CANDIDATES", func(c *Config) { c.MaxCandidates = 0 }},
		{"MEDIA_WS_SEND_QUEUE", func(c *Config) { c.SendQueue = 0 }},
		{"MEDIA_WS_SEND_TIMEOUT", func(c *Config) { c.SendTimeout = 0 }},
		{"MEDIA_WS_WRITE_TIMEOUT", func(c *Config) { c.WriteTimeout = -time.Second }},
		{"MEDIA_WS_PING_INTERVAL", func(c *Config) { c.PingInterval = 0 }},
		{"MEDIA_WS_IDLE_TIMEOUT", func(c *Config) { c.IdleTimeout = c.PingInterval }},
		{"MEDIA_WS_READ_LIMIT", func(c *Config) { c.ReadLimit = 100 }},
		{"MEDIA_OFFER_BURST", func(c *Config) { c.OfferBurst = 0 }},
		{"MEDIA_WS_MESSAGE_RATE", func(c *Config) { c.MessageRate = 0 }},
		{"MEDIA_WS_MESSAGE_BURST", func(c *Config) { c.MessageBurst = 0 }},
		{"MEDIA_OFFER_INTERVAL", func(c *Config) { c.OfferInterval = 0 }},
		{"MEDIA_NEGOTIATION_TIMEOUT", func(c *Config) { c.NegotiationTimeout = 0 }},
		{"MEDIA_RETRY_AFTER", func(c *Config) { c.RetryAfter = 500 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.variable, func(t *testing.T) {
			c := testConfig()
			tt.edit(&c)
			err := c.validate()
			if err == nil || !strings.Contains(err.Error(), tt.variable) {
				t.Errorf("validate() = %v; want an error naming %s", err, tt.variable)
			}
		})
	}
}
