package load

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/netlab"
	"github.com/media-service/media-service/internal/testenv"
)

// TestCappedSmoke runs a short capped scenario (2 receivers of the top
// layer, one more capped at 400 kbit/s for 10 s) against the built
// binary and checks that every figure of the capped receiver was
// measured: the capped receiver's stream, its convergence and return
// (or -1 for never, which fails the run), and the server's window and
// the floor beside it. The figures' values are the lead's to judge on a
// quiet machine; edge/congestiontest asserts the bounds.
func TestCappedSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	if err := netlab.Available(); err != nil {
		testenv.Missing(t, "capped: %v", err)
	}
	cfg := smokeConfig(t, "capped", buildServer(t))
	cfg.Subscribers, cfg.CapFor, cfg.MaxLoss = 2, 10*time.Second, 5
	cfg.Timing.Warmup, cfg.Timing.Window = time.Second, 5*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run(capped) = %v", err)
	}
	c := rep.Capped
	if c == nil {
		t.Fatalf("report has no capped section; failures %q", rep.Failures)
	}
	t.Logf("capped: %+v; server CPU per packet %.1f µs, %.2f × the floor", *c, rep.Server.CPUMicrosPerPkt, rep.CostRatio)
	if c.CapKbps != 400 || c.CapSeconds != 10 || c.Overshoot <= 0 || c.ConvergenceSeconds == 0 || c.BackToTopSeconds == 0 {
		t.Errorf("capped = %+v; want the cap, a receive rate, a convergence and a return measured (or -1)", *c)
	}
	failed := slices.ContainsFunc(rep.Failures, func(f string) bool { return strings.HasPrefix(f, "capped:") })
	if never := c.ConvergenceSeconds < 0 || c.BackToTopSeconds < 0; failed != never {
		t.Errorf("failures %q with capped %+v; want a capped failure exactly when the receiver never converged or never came back", rep.Failures, *c)
	}
	if j := rep.Joins; j == nil || j.Joined != 4 {
		t.Errorf("joins = %+v; want 4 joined", j)
	}
	if rep.Server == nil || rep.Server.Forwarded == 0 || rep.Floor == nil || rep.CostRatio <= 0 {
		t.Errorf("server %+v, floor %+v, cost ratio %.2f; want both measured", rep.Server, rep.Floor, rep.CostRatio)
	}
}
