package load

import (
	"context"
	"testing"
	"time"
)

// TestSimulcastSmoke runs a tiny simulcast fan-out (one publisher of
// three layers to three subscribers, one per layer) against a real
// instance: every subscriber gets the layer it asked for, whole, and
// nothing of the others; the report has the server's CPU, the floor's,
// and the publisher's uplink on every layer.
func TestSimulcastSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	cfg := smokeConfig(t, "simulcast", bin)
	cfg.Subscribers, cfg.MaxLoss = 3, 0
	cfg.Timing.Warmup, cfg.Timing.Window = 2*time.Second, 3*time.Second
	rep := runSmoke(t, cfg)
	if !rep.OK {
		t.Errorf("simulcast smoke failed: %q", rep.Failures)
	}
	if j := rep.Joins; j == nil || j.Joined != 4 {
		t.Errorf("joins = %+v; want 4 joined", j)
	}
	s := rep.Server
	if s == nil || s.Forwarded == 0 || s.Lost != 0 || s.Unexpected != 0 || s.Forwarded != s.Expected {
		t.Fatalf("server forwarding = %+v; want packets, no loss, nothing unexpected", s)
	}
	if s.CPUSeconds <= 0 || rep.Floor == nil || rep.Floor.Lost != 0 || rep.CostRatio <= 0 {
		t.Errorf("server CPU %.3fs, floor %+v, cost ratio %.2f; want all measured", s.CPUSeconds, rep.Floor, rep.CostRatio)
	}
	if rep.Simulcast == nil || len(rep.Simulcast.Layers) != 3 {
		t.Fatalf("simulcast report = %+v; want three layers", rep.Simulcast)
	}
	for i, l := range rep.Simulcast.Layers {
		pps := simLayers[i].media(cfg.Media).VideoPPS()
		want := pps * s.WindowSeconds
		if l.Subscribers != 1 || l.Lost != 0 || l.OtherLayers != 0 || float64(l.Forwarded) < 0.7*want || float64(l.Forwarded) > 1.2*want {
			t.Errorf("layer %s = %+v; want 1 subscriber receiving about %.0f packets, none lost, none of other layers", l.Quality, l, want)
		}
		if l.UplinkKbps < 0.7*float64(simLayers[i].kbps) {
			t.Errorf("layer %s: publisher uplink %.0f kbit/s; want about %d", l.Quality, l.UplinkKbps, simLayers[i].kbps)
		}
	}
}

// TestDynacastSmoke runs the dynacast scenario twice, with two
// subscribers that both ask for the low layer: with dynacast the
// publisher sends nothing of the upper layers in the window; without it
// (a publisher ignoring the server's layers messages) it sends all three,
// and the subscribers get the low layer either way.
func TestDynacastSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	for _, dynacast := range []bool{true, false} {
		cfg := smokeConfig(t, "dynacast", bin)
		cfg.Subscribers, cfg.MaxLoss, cfg.Dynacast, cfg.Floor = 2, 0, dynacast, false
		cfg.Timing.Warmup, cfg.Timing.Window = 2*time.Second, 3*time.Second
		rep := runSmoke(t, cfg)
		if !rep.OK {
			t.Errorf("dynacast=%v: smoke failed: %q", dynacast, rep.Failures)
		}
		if rep.Server == nil || rep.Server.CPUSeconds <= 0 || rep.Simulcast == nil {
			t.Fatalf("dynacast=%v: server %+v, simulcast %+v; want both measured", dynacast, rep.Server, rep.Simulcast)
		}
		layers := rep.Simulcast.Layers
		if low := layers[0]; low.Subscribers != 2 || low.Forwarded == 0 || low.Lost != 0 || low.UplinkBytes == 0 {
			t.Errorf("dynacast=%v: low layer = %+v; want 2 subscribers receiving it whole", dynacast, low)
		}
		for _, l := range layers[1:] {
			if sent := l.UplinkBytes > 0; sent == dynacast {
				t.Errorf("dynacast=%v: layer %s uplink %d bytes in the window; want sent only without dynacast", dynacast, l.Quality, l.UplinkBytes)
			}
		}
	}
}

// runSmoke runs cfg within two minutes.
func runSmoke(t *testing.T, cfg Config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run(%s) = %v", cfg.Scenario, err)
	}
	return rep
}
