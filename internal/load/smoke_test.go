package load

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/redistest"
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

// smokeConfig is a short run of scenario against a real instance that
// -spawn starts from bin, with the test binary as the floor relay.
func smokeConfig(t *testing.T, scenario, bin string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Scenario, cfg.Spawn, cfg.RelayExe, cfg.ChildStderr = scenario, bin, testExe(t), os.Stderr
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
	// No loss is allowed, as README claims none: video losses are
	// repaired by NACK within the 2 s grace, the paced senders skip (and
	// count, never as loss) what a starved load generator cannot send in
	// time, and so a loaded 2-core machine loses nothing here.
	cfg := smokeConfig(t, "fanout", bin)
	cfg.Subscribers, cfg.Media.VideoKbps, cfg.MaxLoss = 3, 880, 0
	cfg.Timing.Warmup, cfg.Timing.Window = time.Second, 3*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run(fanout) = %v", err)
	}
	if !rep.OK {
		t.Errorf("fanout smoke failed: %q", rep.Failures)
	}
	if j := rep.Joins; j == nil || j.Joined != 4 || j.FirstMediaP50 <= 0 {
		t.Errorf("joins = %+v; want 4 joined with a first-media time", j)
	}
	s := rep.Server
	if s == nil || s.Forwarded == 0 || s.Lost != 0 || s.Unexpected != 0 || s.LatencyP50 <= 0 || s.Forwarded != s.Expected {
		t.Fatalf("server forwarding = %+v; want packets, no loss, nothing unexpected, a latency, forwarded = expected", s)
	}
	// 3 subscribers x (100 video + 50 audio) per second.
	if s.PacketsPerSec < 0.7*450 || s.PacketsPerSec > 1.2*450 {
		t.Errorf("forwarded per second = %.0f; want about 450", s.PacketsPerSec)
	}
	if s.CPUSeconds <= 0 || rep.Floor == nil || rep.Floor.Lost != 0 || rep.CostRatio <= 0 {
		t.Errorf("server CPU %.3fs, floor %+v, cost ratio %.2f; want all measured, the floor without loss", s.CPUSeconds, rep.Floor, rep.CostRatio)
	}
	if rep.FloorSends != FloorSendsBatched && runtime.GOOS == "linux" {
		t.Errorf("floor sends = %q; want %q by default", rep.FloorSends, FloorSendsBatched)
	}
	if r := rep.Resources; r == nil || r.Loaded.Goroutines <= r.Baseline.Goroutines || r.Loaded.RSS <= 0 {
		t.Errorf("server resources = %+v; want more goroutines loaded than idle", r)
	}
}

// TestFanoutRelaySmoke runs a tiny fanout whose subscribers are
// relay-only (-relay): they can only reach the instance through its own
// TURN relay, each holding allocations there, and get every packet. Then
// again with a light receiver, which reads its media from the relay's
// ChannelData at its socket.
func TestFanoutRelaySmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	for _, light := range []bool{false, true} {
		cfg := smokeConfig(t, "fanout", bin)
		cfg.Subscribers, cfg.Media.VideoKbps, cfg.MaxLoss, cfg.Floor, cfg.Relay = 2, 440, 0, false, true
		cfg.Timing.Warmup, cfg.Timing.Window = time.Second, 2*time.Second
		if light {
			cfg.Light = 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		rep, err := Run(ctx, cfg, nil)
		cancel()
		if err != nil {
			t.Fatalf("Run(fanout -relay, light %v) = %v", light, err)
		}
		if s := rep.Server; !rep.OK || s == nil || s.Forwarded == 0 || s.Lost != 0 || s.Forwarded != s.Expected {
			t.Fatalf("fanout -relay, light %v: ok %v %q, forwarding %+v; want every packet", light, rep.OK, rep.Failures, s)
		}
		// Each subscriber's two connections allocate (the subscriber one
		// at least); the publisher, direct, allocates none it keeps using.
		if r := rep.Resources; r == nil || r.Loaded.TURNAllocations < 2 {
			t.Errorf("light %v: loaded TURN allocations = %+v; want one per subscriber at least", light, r)
		}
		if c := rep.Receivers; light && (c == nil || c.Light != 1 || c.AtSocket == 0) {
			t.Errorf("light: receivers = %+v; want 1 light reading the relay's ChannelData at its socket", c)
		}
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
	cfg := smokeConfig(t, "churn", bin)
	cfg.Cycles, cfg.Parallel, cfg.Hold, cfg.Media.VideoKbps, cfg.Settle = 6, 2, 300*time.Millisecond, 440, 15*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run(churn) = %v", err)
	}
	if !rep.OK {
		t.Errorf("churn smoke failed: %q", rep.Failures)
	}
	c := rep.Churn
	if c == nil || c.Completed != 6 || c.Before.Goroutines <= 0 {
		t.Fatalf("churn = %+v; want 6 completed cycles and server samples", c)
	}
}

// TestSeveralURLsSmoke joins a fanout through two URLs of one real
// instance (127.0.0.1 and localhost), as a run against a fleet joins
// through several instances: every participant is placed by round robin
// and counted per URL, and the instance's numbers come from -ops-urls.
func TestSeveralURLsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := spawn(ctx, bin, spawnEnv(16), "", os.Stderr)
	if err != nil {
		t.Fatalf("spawn(%s) = %v", bin, err)
	}
	defer s.stop()
	byName := strings.Replace(s.httpURL, "127.0.0.1", "localhost", 1)
	cfg := DefaultConfig()
	cfg.URLs, cfg.OpsURLs, cfg.Floor = []string{s.httpURL, byName}, []string{s.opsURL}, false
	cfg.Subscribers, cfg.Media.VideoKbps = 3, 440
	cfg.Timing.Warmup, cfg.Timing.Window = time.Second, 2*time.Second
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run(fanout -urls) = %v", err)
	}
	if !rep.OK || rep.Joins == nil || rep.Joins.Joined != 4 || rep.Joins.Redirected != 0 {
		t.Errorf("report ok=%v joins=%+v failures=%q; want ok, 4 joined, none redirected", rep.OK, rep.Joins, rep.Failures)
	}
	want := map[string]int{s.httpURL: 2, byName: 2}
	if p := rep.Placement; p == nil || p.Policy != PlaceRoundRobin || !maps.Equal(p.Joins, want) {
		t.Errorf("placement = %+v; want round-robin with %v", p, want)
	}
	if rep.Server == nil || rep.Server.CPUSeconds <= 0 || rep.Floor != nil {
		t.Errorf("server %+v, floor %+v; want the server's CPU from -ops-urls and no floor", rep.Server, rep.Floor)
	}
}

// TestFleetDrainSmoke runs a small fanout against a fleet that
// -spawn-fleet starts (a real redis-server and two instances of the built
// binary), joining round robin through both, and drains the instance
// holding the room partway through the window: joins are split into
// direct and redirected ones, every participant moves make before break
// and the room ends whole on the survivor, and each receiver's media gap
// is measured. Only a generous bound is put on the gap: the machine may
// be loaded.
func TestFleetDrainSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	redistest.Require(t)
	bin := buildServer(t)
	cfg := smokeConfig(t, "fanout", bin)
	cfg.SpawnFleet, cfg.DrainAfter, cfg.Floor = 2, 2*time.Second, false
	cfg.Subscribers, cfg.Media.VideoKbps = 4, 440
	// What a receiver misses while it moves is loss in the window: allow
	// a loaded machine's gap, which the drain report measures.
	cfg.MaxLoss = 20
	// The moves, 2 s into the window, have 8 s to complete while media
	// still flows, whatever the machine's load.
	cfg.Timing.Warmup, cfg.Timing.Window = time.Second, 10*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run(fanout -spawn-fleet 2 -drain-after 2s) = %v", err)
	}
	var b strings.Builder
	rep.Write(&b, false)
	t.Logf("report:\n%s", b.String())
	j := rep.Joins
	if j == nil || j.Joined != 5 || j.Direct.Joins == 0 || j.ViaRedirect.Joins == 0 || j.Redirected == 0 {
		t.Errorf("joins = %+v; want 5 joined, some timed joins direct and some redirected", j)
	}
	d := rep.Drain
	if d == nil {
		t.Fatalf("no drain report; failures %q", rep.Failures)
	}
	if d.Instances != 2 || d.Participants != 5 || d.Moved != 5 || d.MoveFailed != 0 || d.Rooms != 1 || d.RoomsWhole != 1 {
		t.Errorf("drain = %+v; want all 5 participants of the one room moved, the room whole on one of 2 instances", d)
	}
	if len(d.EndedAt) != 1 {
		t.Errorf("after the drain, participants at %v; want one instance", d.EndedAt)
	}
	for u, n := range d.EndedAt {
		if n != 5 || u == d.Drained {
			t.Errorf("after the drain, participants at %v; want all 5 at the survivor, none at the drained %s", d.EndedAt, d.Drained)
		}
	}
	if len(d.Gaps) != 4 {
		t.Errorf("drain gaps per receiver = %d entries; want the 4 subscribers'", len(d.Gaps))
	}
	for _, g := range []gapReport{d.AudioGap, d.VideoGap} {
		if g.Receivers != 4 || g.Max > 10_000 {
			t.Errorf("drain gap = %+v; want 4 receivers, each resumed within 10 s", g)
		}
	}
	if !rep.OK {
		t.Errorf("fleet drain smoke failed: %q", rep.Failures)
	}
}
