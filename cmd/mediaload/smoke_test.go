package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildServer builds the real media-service binary for the tests that
// start it with -spawn, as `just load` does.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "media-service")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/media-service/media-service/cmd/media-service").CombinedOutput()
	if err != nil {
		t.Fatalf("go build media-service: %v\n%s", err, out)
	}
	return bin
}

// smokeConfig parses args as mediaload's command line would, with the test
// binary as the floor relay.
func smokeConfig(t *testing.T, scenario string, args ...string) config {
	t.Helper()
	cfg, err := parseFlags(scenario, append(args, "-quiet"), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseFlags(%s %q) = %v", scenario, args, err)
	}
	cfg.floorOpts = testFloorOptions(t)
	return cfg
}

// TestFanoutSmoke runs a tiny fanout (1 publisher to 3 subscribers, a few
// seconds) against a real instance started with -spawn, and checks every
// part of the report: joins, forwarding without loss, the server's numbers
// from /metrics, and the floor in the same run.
func TestFanoutSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	// -max-loss 5: CI runs this beside browser tests on 2 cores; the
	// point here is that every part of the run works end to end.
	cfg := smokeConfig(t, "fanout", "-spawn", bin, "-subscribers", "3", "-video-kbps", "880",
		"-warmup", "1s", "-duration", "3s", "-max-loss", "5")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := runScenario(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatalf("runScenario(fanout) = %v", err)
	}
	if !rep.OK {
		t.Errorf("fanout smoke failed: %q", rep.Failures)
	}
	if j := rep.Joins; j == nil || j.Joined != 4 || j.FirstMediaP50 <= 0 {
		t.Errorf("joins = %+v; want 4 joined with a first-media time", j)
	}
	s := rep.Server
	if s == nil || s.Forwarded == 0 || s.Unexpected != 0 || s.LatencyP50 <= 0 || s.Forwarded+s.Lost != s.Expected {
		t.Fatalf("server forwarding = %+v; want packets, nothing unexpected, a latency, forwarded+lost = expected", s)
	}
	// 3 subscribers x (100 video + 50 audio) per second.
	if s.PacketsPerSec < 0.7*450 || s.PacketsPerSec > 1.2*450 {
		t.Errorf("forwarded per second = %.0f; want about 450", s.PacketsPerSec)
	}
	if s.CPUSeconds <= 0 || rep.Floor == nil || rep.CostRatio <= 0 {
		t.Errorf("server CPU %.3fs, floor %+v, cost ratio %.2f; want all measured", s.CPUSeconds, rep.Floor, rep.CostRatio)
	}
	if r := rep.Resources; r == nil || r.Loaded.Goroutines <= r.Baseline.Goroutines || r.Loaded.RSS <= 0 {
		t.Errorf("server resources = %+v; want more goroutines loaded than idle", r)
	}
}

// TestChurnSmoke joins and leaves a few participants against a real
// instance and checks that the server returns to its goroutine and file
// counts.
func TestChurnSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	cfg := smokeConfig(t, "churn", "-spawn", bin, "-cycles", "6", "-parallel", "2", "-hold", "300ms",
		"-video-kbps", "440", "-settle", "15s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := runScenario(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatalf("runScenario(churn) = %v", err)
	}
	if !rep.OK {
		t.Errorf("churn smoke failed: %q", rep.Failures)
	}
	c := rep.Churn
	if c == nil || c.Completed != 6 || c.Before.Goroutines <= 0 {
		t.Fatalf("churn = %+v; want 6 completed cycles and server samples", c)
	}
}
