package telemetry_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/telemetry"
)

// fleetPrefix starts the names of the fleet directory's metrics, which an
// instance exports only when it runs in a fleet (MEDIA_REDIS_URL).
const fleetPrefix = "media_fleet_"

// TestFleetMetricsExported runs a Fleet on the provider's meter and checks
// its scrape against the ops kit both ways: every media_fleet_* name that
// alerts.yml or dashboard.json uses is exported under exactly that name,
// and every media_fleet_* family exported is on the dashboard or in a rule.
func TestFleetMetricsExported(t *testing.T) {
	var cfg telemetry.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	p, err := telemetry.New(t.Context(), cfg, telemetry.Options{Log: log, Version: "test"})
	if err != nil {
		t.Fatalf("telemetry.New: %v", err)
	}
	defer p.Shutdown(context.Background())
	fcfg := fleet.Config{LeaseTTL: time.Second}
	f, err := fleet.New(fcfg, fcfg.Instance("m1"), fleet.NewMemoryStore(), log, p.Meter("fleet"))
	if err != nil {
		t.Fatalf("fleet.New: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { f.Run(ctx) })
	defer func() { cancel(); wg.Wait(); f.Close() }()
	// A placement records the round-trip histogram and the placement
	// counter; the first renewal, which may end after the placement, the
	// store gauge. So scrape until both have happened.
	deadline := time.Now().Add(20 * time.Second)
	var fams map[string]*dto.MetricFamily
	for {
		_, err := f.Place(t.Context(), "r", "")
		fams = scrape(t, p)
		if err == nil && exported(fams, "media_fleet_store_up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: Place = %v, media_fleet_store_up exported = %v; want a placement and a renewal",
				err, exported(fams, "media_fleet_store_up"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	used := map[string]bool{}
	for _, name := range usedMetricNames(t) {
		if !strings.HasPrefix(name, fleetPrefix) {
			continue
		}
		used[name] = true
		if !exported(fams, name) {
			t.Errorf("%s is used by alerts.yml or dashboard.json but a Fleet does not export it", name)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, fleetPrefix) {
			continue
		}
		onDashboard := used[name]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			onDashboard = onDashboard || used[name+suffix]
		}
		if !onDashboard {
			t.Errorf("a Fleet exports %s, which neither dashboard.json nor alerts.yml shows", name)
		}
	}
}

// scrape parses the provider's /metrics.
func scrape(t *testing.T, p *telemetry.Provider) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}
