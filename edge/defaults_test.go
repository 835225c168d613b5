package edge

import (
	"reflect"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
)

// defaultConfig is the configuration an empty environment gives: the
// defaults README and SECURITY.md publish.
func defaultConfig(t *testing.T) Config {
	t.Helper()
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Environment: map[string]string{}})
	if err != nil {
		t.Fatalf("env.Parse(empty) = %v", err)
	}
	return cfg
}

// TestDefaults: an empty environment gives the documented defaults (50
// candidates, a 256-message queue, a 1 s send timeout, 64 KiB messages and
// the rest), and they validate once DeriveDefaults has filled in
// MEDIA_MAX_SESSIONS, which has no fixed default. docs/claims_test.go holds the documents
// to the same tags; this holds the tags to the numbers.
func TestDefaults(t *testing.T) {
	got := defaultConfig(t)
	want := Config{
		Port: 8080, OpsPort: 9091, DrainTimeout: 30 * time.Second, SessionShards: 32, MaxSessions: 0,
		MaxSessionsPerIP: 64, MaxConnsPerIP: 128, MaxConns: 4096,
		HTTPHeaderTimeout: 10 * time.Second, HTTPIdleTimeout: 75 * time.Second,
		MaxRooms: 100, MaxRoomParticipants: 50, MaxTracks: 4, MaxCandidates: 50,
		SendQueue: 256, SendTimeout: time.Second, WriteTimeout: 10 * time.Second,
		PingInterval: 10 * time.Second, IdleTimeout: 30 * time.Second, ReadLimit: 65536,
		MessageRate: 50, MessageBurst: 100, OfferBurst: 10, OfferInterval: time.Second,
		NegotiationTimeout: 15 * time.Second, RetryAfter: 2 * time.Second, ResumeGrace: 15 * time.Second,
		DataMaxMessage: 15 << 10, DataMessageRate: 100, DataMessageBurst: 200, DataMaxBuffered: 256 << 10,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("env.Parse(empty) = %+v; want %+v", got, want)
	}
	if err := got.Validate(); err == nil {
		t.Errorf("validate(defaults before DeriveDefaults) = nil; want MEDIA_MAX_SESSIONS refused")
	}
	got.DeriveDefaults(1)
	if err := got.Validate(); err != nil {
		t.Errorf("validate(defaults) = %v; want nil", err)
	}
}
