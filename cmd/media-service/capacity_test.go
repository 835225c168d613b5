package main

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/media-service/media-service/edge"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/internal/envconfig"
)

// derivedMaxSessions is MEDIA_MAX_SESSIONS's default at procs, as edge
// derives it from the measured capacity.
func derivedMaxSessions(t *testing.T, procs int) int {
	t.Helper()
	var c edge.Config
	if err := envconfig.Parse(&c, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	c.DeriveDefaults(procs)
	return c.MaxSessions
}

// TestLoadConfigDerivesMaxSessions: with MEDIA_MAX_SESSIONS unset the
// bound is derived from the GOMAXPROCS given, and a configured one wins.
func TestLoadConfigDerivesMaxSessions(t *testing.T) {
	for _, tt := range []struct {
		env   map[string]string
		procs int
		want  int
	}{
		{map[string]string{}, 1, derivedMaxSessions(t, 1)},
		{map[string]string{}, 2, derivedMaxSessions(t, 2)},
		{map[string]string{"MEDIA_MAX_SESSIONS": "7"}, 2, 7},
	} {
		c, err := loadConfig(tt.env, tt.procs)
		if err != nil || c.edge.MaxSessions != tt.want {
			t.Errorf("loadConfig(%v, %d) MaxSessions = %d, %v; want %d", tt.env, tt.procs, c.edge.MaxSessions, err, tt.want)
		}
	}
}

// TestInstanceSizesItselfByGOMAXPROCS starts the binary with GOMAXPROCS
// 1 and 2: each logs the capacity and bound it derived for its own
// GOMAXPROCS, and exports that bound as media_sessions_limit.
func TestInstanceSizesItselfByGOMAXPROCS(t *testing.T) {
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			s := startService(t, fmt.Sprintf("GOMAXPROCS=%d", procs))
			ev, ok := s.Find("capacity") // logged before server_started, which Start waited for
			if !ok {
				t.Fatalf("no capacity event before server_started")
			}
			want := derivedMaxSessions(t, procs)
			if ev["gomaxprocs"] != float64(procs) || ev["max_sessions"] != float64(want) || ev["session_capacity"] != float64(edge.SessionCapacity(procs)) {
				t.Errorf("capacity event = %v; want gomaxprocs %d, max_sessions %d, session_capacity %d", ev, procs, want, edge.SessionCapacity(procs))
			}
			_, body := get(t, "http://"+s.OpsAddr+"/metrics")
			limit := regexp.MustCompile(`(?m)^media_sessions_limit(?:\{[^}]*\})? ([0-9]+)$`).FindStringSubmatch(body)
			if limit == nil || limit[1] != fmt.Sprint(want) {
				t.Errorf("media_sessions_limit = %v; want %d", limit, want)
			}
		})
	}
}

// TestAdvertisedLoadCarriesCapacity: the load edge hands the fleet is
// registered with the instance's capacity and its CPU share beside what
// edge counted.
func TestAdvertisedLoadCarriesCapacity(t *testing.T) {
	var cfg fleet.Config
	if err := envconfig.Parse(&cfg, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	f, err := fleet.New(cfg, cfg.Instance("i"), fleet.NewMemoryStore(), slog.New(slog.DiscardHandler), noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	d := &loadedFleet{Fleet: f, capacity: 40}
	d.SetLoad(fleet.Load{Sessions: 30, MaxSessions: 32})
	if got := f.Self().Load; got.Capacity != 40 || got.Sessions != 30 || got.MaxSessions != 32 {
		t.Errorf("registered load = %+v; want capacity 40 beside 30 sessions of 32", got)
	}
}

// TestLoadConfigLogLevel: MEDIA_LOG_LEVEL sets the log's least level; a
// level slog does not know is refused at start, naming the variable.
func TestLoadConfigLogLevel(t *testing.T) {
	for env, want := range map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		e := map[string]string{}
		if env != "" {
			e["MEDIA_LOG_LEVEL"] = env
		}
		c, err := loadConfig(e, 1)
		if err != nil || c.telemetry.LogLevel != want {
			t.Errorf("MEDIA_LOG_LEVEL=%q: level %v, %v; want %v", env, c.telemetry.LogLevel, err, want)
		}
	}
	if _, err := loadConfig(map[string]string{"MEDIA_LOG_LEVEL": "loud"}, 1); err == nil || !strings.Contains(err.Error(), "MEDIA_LOG_LEVEL") {
		t.Errorf("MEDIA_LOG_LEVEL=loud: %v; want an error naming MEDIA_LOG_LEVEL", err)
	}
}
