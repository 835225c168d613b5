package fleet_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/media-service/media-service/edge/fleet"
	"go.opentelemetry.io/otel/metric/noop"
)

// parseConfig fills a Config from environ as cmd/media-service does.
func parseConfig(t *testing.T, environ map[string]string) fleet.Config {
	t.Helper()
	var c fleet.Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		t.Fatalf("env.Parse(%v): %v", environ, err)
	}
	return c
}

// Defaults: no Redis (the instance runs alone, on the in-process store),
// a 10 s lease.
func TestConfigDefaults(t *testing.T) {
	c := parseConfig(t, map[string]string{})
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() of the defaults = %v; want nil", err)
	}
	if c.LeaseTTL != 10*time.Second {
		t.Errorf("LeaseTTL default = %v; want 10s", c.LeaseTTL)
	}
	s, err := fleet.OpenStore(t.Context(), c)
	if err != nil {
		t.Fatalf("OpenStore(defaults) = %v", err)
	}
	if _, ok := s.(*fleet.MemoryStore); !ok {
		t.Errorf("OpenStore(defaults) = %T; want *fleet.MemoryStore", s)
	}
}

// Every bad value stops the start with an error naming its variable, and
// the Redis URL's password never appears in it.
func TestConfigErrorsNameTheVariable(t *testing.T) {
	ok := map[string]string{"MEDIA_REDIS_URL": "redis://u:secret@127.0.0.1:6379/0", "MEDIA_PUBLIC_URL": "https://m1.example.com"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range ok {
			m[kk] = vv
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		environ map[string]string
		want    string
	}{
		{"scheme", with("MEDIA_REDIS_URL", "http://u:secret@h:1"), "MEDIA_REDIS_URL"},
		{"not a URL", with("MEDIA_REDIS_URL", "redis://u:secret@h:1:2:%zz"), "MEDIA_REDIS_URL"},
		{"database", with("MEDIA_REDIS_URL", "redis://u:secret@h:1/x"), "MEDIA_REDIS_URL"},
		{"no host", with("MEDIA_REDIS_URL", "redis://"), "MEDIA_REDIS_URL"},
		{"public URL missing", with("MEDIA_PUBLIC_URL", ""), "MEDIA_PUBLIC_URL is required"},
		{"public URL scheme", with("MEDIA_PUBLIC_URL", "wss://m1.example.com"), "MEDIA_PUBLIC_URL"},
		{"public URL query", with("MEDIA_PUBLIC_URL", "https://m1.example.com/?a=b"), "MEDIA_PUBLIC_URL"},
		{"lease", with("MEDIA_FLEET_LEASE_TTL", "500ms"), "MEDIA_FLEET_LEASE_TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parseConfig(t, tc.environ).Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v; want an error naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("Validate() = %v; it shows the password", err)
			}
			if _, err := fleet.OpenStore(context.Background(), parseConfig(t, tc.environ)); err == nil {
				t.Errorf("OpenStore() with a bad %s = nil error", tc.want)
			}
		})
	}
	if err := parseConfig(t, ok).Validate(); err != nil {
		t.Errorf("Validate() of a good Redis config = %v; want nil", err)
	}
}

// MEDIA_REGION wins over FLY_REGION; FLY_APP_NAME and MEDIA_PUBLIC_URL
// land in this instance's registry entry.
func TestConfigInstance(t *testing.T) {
	for _, tc := range []struct {
		environ map[string]string
		want    fleet.Instance
	}{
		{map[string]string{"FLY_REGION": "ams", "FLY_APP_NAME": "media-ams", "MEDIA_PUBLIC_URL": "https://media-ams.fly.dev"},
			fleet.Instance{ID: "i", Region: "ams", App: "media-ams", URL: "https://media-ams.fly.dev"}},
		{map[string]string{"FLY_REGION": "ams", "MEDIA_REGION": "eu-west"},
			fleet.Instance{ID: "i", Region: "eu-west"}},
	} {
		if got := parseConfig(t, tc.environ).Instance("i"); got != tc.want {
			t.Errorf("Instance(i) from %v = %+v; want %+v", tc.environ, got, tc.want)
		}
	}
}

// New refuses an empty instance id, and an instance with Redis but no URL.
func TestNewChecksSelf(t *testing.T) {
	c := fleet.Config{LeaseTTL: time.Second}
	if _, err := fleet.New(c, fleet.Instance{}, fleet.NewMemoryStore(), testLog(t), noop.NewMeterProvider().Meter("test")); err == nil {
		t.Error("New with an empty instance id = nil error")
	}
}
