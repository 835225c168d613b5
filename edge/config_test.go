package edge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/media-service/media-service/edge/auth"
)

// TestConfigNamesBadVariable: every bad value stops the start with an
// error that names its environment variable.
func TestConfigNamesBadVariable(t *testing.T) {
	if err := testConfig().Validate(); err != nil {
		t.Fatalf("testConfig().Validate() = %v; want nil", err)
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
		{"MEDIA_MAX_CONNS_PER_IP", func(c *Config) { c.MaxConnsPerIP = -1 }},
		{"MEDIA_MAX_CONNS_PER_IP", func(c *Config) { c.MaxSessionsPerIP, c.MaxConnsPerIP = 10, 10 }},
		{"MEDIA_MAX_CONNS", func(c *Config) { c.MaxConns = -1 }},
		{"MEDIA_MAX_CONNS", func(c *Config) { c.MaxConns = c.MaxSessions }},
		{"MEDIA_HTTP_HEADER_TIMEOUT", func(c *Config) { c.HTTPHeaderTimeout = 0 }},
		{"MEDIA_HTTP_IDLE_TIMEOUT", func(c *Config) { c.HTTPIdleTimeout = -time.Second }},
		{"MEDIA_DATA_MAX_MESSAGE", func(c *Config) { c.DataMaxMessage = 8 }},
		{"MEDIA_DATA_MAX_MESSAGE", func(c *Config) { c.DataMaxMessage = 65537 }},
		{"MEDIA_DATA_MESSAGE_RATE", func(c *Config) { c.DataMessageRate = 0 }},
		{"MEDIA_DATA_MESSAGE_BURST", func(c *Config) { c.DataMessageBurst = 0 }},
		{"MEDIA_DATA_MAX_BUFFERED", func(c *Config) { c.DataMaxBuffered = c.DataMaxMessage - 1 }},
		{"MEDIA_API_SECRET", func(c *Config) { c.APIKey, c.APISecret = "k", "short" }},
		{"MEDIA_API_KEY", func(c *Config) { c.APIKey, c.APISecret = "", strings.Repeat("s", 32) }},
	}
	for _, tt := range tests {
		t.Run(tt.variable, func(t *testing.T) {
			c := testConfig()
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.variable) {
				t.Errorf("Validate() = %v; want an error naming %s", err, tt.variable)
			}
		})
	}
}

// TestConfigConnBounds: the defaults from an empty environment are
// valid, and so are the connection bounds turned off, or a per-address
// bound below the session one behind a proxy, where it does not apply.
func TestConfigConnBounds(t *testing.T) {
	var defaults Config
	if err := env.ParseWithOptions(&defaults, env.Options{Environment: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	defaults.DeriveDefaults(2) // MEDIA_MAX_SESSIONS's default follows GOMAXPROCS
	tests := []struct {
		name string
		cfg  func() Config
	}{
		{"defaults", func() Config { return defaults }},
		{"both off", func() Config {
			c := testConfig()
			c.MaxConnsPerIP, c.MaxConns = 0, 0
			return c
		}},
		{"per address below sessions behind a proxy", func() Config {
			c := testConfig()
			c.ClientIPHeader, c.MaxSessionsPerIP, c.MaxConnsPerIP = "Fly-Client-IP", 10, 5
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg().Validate(); err != nil {
				t.Errorf("Validate() = %v; want nil", err)
			}
		})
	}
	if defaults.MaxConnsPerIP != 128 || defaults.MaxConns != 4096 ||
		defaults.HTTPHeaderTimeout != 10*time.Second || defaults.HTTPIdleTimeout != 75*time.Second {
		t.Errorf("defaults: conns per IP %d, conns %d, header %s, idle %s; want 128, 4096, 10s, 75s",
			defaults.MaxConnsPerIP, defaults.MaxConns, defaults.HTTPHeaderTimeout, defaults.HTTPIdleTimeout)
	}
}

// TestKeys: the key pair is checked by the rule the start applies, and
// is the dev pair without a secret.
func TestKeys(t *testing.T) {
	secret := strings.Repeat("s", auth.MinSecretLen)
	tests := []struct {
		key, secret string
		want        auth.KeyPair
		wantErr     string
	}{
		{"", "", auth.DevKeyPair(), ""},
		{"prod", secret, auth.KeyPair{Key: "prod", Secret: secret}, ""},
		{"prod", secret[1:], auth.KeyPair{}, "edge: MEDIA_API_SECRET must be at least 32 bytes, got 31"},
		{"", secret, auth.KeyPair{}, "edge: MEDIA_API_KEY is required when MEDIA_API_SECRET is set"},
	}
	for _, tt := range tests {
		c := testConfig()
		c.APIKey, c.APISecret = tt.key, tt.secret
		got, err := c.Keys()
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		if got != tt.want || errText != tt.wantErr {
			t.Errorf("Config{%q, %q}.Keys() = %+v, %v; want %+v, %q", tt.key, tt.secret, got, err, tt.want, tt.wantErr)
		}
		if verr := c.Validate(); fmt.Sprint(verr) != fmt.Sprint(err) {
			t.Errorf("Config{%q, %q}: Keys() = %v but Validate() = %v; want the same verdict", tt.key, tt.secret, err, verr)
		}
	}
}
