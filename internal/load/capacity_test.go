package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSearchCapacity drives the search with a step function that holds
// up to a known capacity: the steps it takes, and what it finds.
func TestSearchCapacity(t *testing.T) {
	tests := []struct {
		name         string
		capacity     int // the fake instance holds n <= capacity
		start, limit int
		good, bad    int
		steps        []int
	}{
		{"doubles then bisects", 300, 10, 1000, 300, 320, []int{10, 20, 40, 80, 160, 320, 240, 280, 300}},
		{"holds up to the ceiling", 5000, 10, 1000, 1000, 0, []int{10, 20, 40, 80, 160, 320, 640, 1000}},
		{"the ceiling is the start", 5000, 8, 8, 8, 0, []int{8}},
		{"start above the ceiling", 5000, 20, 8, 8, 0, []int{8}},
		{"fails at once, bisects below the start", 7, 10, 1000, 7, 8, []int{10, 5, 7, 8}},
		{"nothing holds", 0, 10, 1000, 0, 1, []int{10, 5, 2, 1}},
		{"one unit only, failing", 0, 1, 1, 0, 1, []int{1}},
		{"the first failure right after a hold", 8, 8, 1000, 8, 9, []int{8, 16, 12, 10, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var steps []int
			probe := func(_ context.Context, n int) (bool, error) {
				steps = append(steps, n)
				return n <= tt.capacity, nil
			}
			good, bad, err := searchCapacity(context.Background(), tt.start, tt.limit, probe)
			if err != nil || good != tt.good || bad != tt.bad {
				t.Errorf("searchCapacity(start %d, limit %d; capacity %d) = %d, %d, %v; want %d, %d, nil",
					tt.start, tt.limit, tt.capacity, good, bad, err, tt.good, tt.bad)
			}
			if !slices.Equal(steps, tt.steps) {
				t.Errorf("steps = %v; want %v", steps, tt.steps)
			}
		})
	}
}

// TestSearchCapacityResolution: whatever the capacity, the search ends
// with the first failure within a 16th of the last hold (or one unit),
// never probes a size twice or outside 1..limit, and stays short.
func TestSearchCapacityResolution(t *testing.T) {
	for capacity := 1; capacity < 1000; capacity += 37 {
		seen := map[int]bool{}
		probe := func(_ context.Context, n int) (bool, error) {
			if seen[n] || n < 1 || n > 1000 {
				t.Fatalf("capacity %d: probed %d again or out of range (seen %v)", capacity, n, seen)
			}
			seen[n] = true
			return n <= capacity, nil
		}
		good, bad, err := searchCapacity(context.Background(), 10, 1000, probe)
		if err != nil || good > capacity || bad <= capacity || bad-good > max(1, bad/capacityResolution) {
			t.Errorf("capacity %d: searchCapacity = %d, %d, %v; want the capacity bracketed within a 16th", capacity, good, bad, err)
		}
		if len(seen) > 14 {
			t.Errorf("capacity %d: %d steps; want at most 14", capacity, len(seen))
		}
	}
}

// TestSearchCapacityInterrupted: a step's error (an interrupted run) ends
// the search with what it knew.
func TestSearchCapacityInterrupted(t *testing.T) {
	probe := func(ctx context.Context, n int) (bool, error) {
		if n > 20 {
			return false, context.Canceled
		}
		return true, nil
	}
	good, bad, err := searchCapacity(context.Background(), 10, 1000, probe)
	if !errors.Is(err, context.Canceled) || good != 20 || bad != 0 {
		t.Errorf("searchCapacity(interrupted at 40) = %d, %d, %v; want 20, 0, context.Canceled", good, bad, err)
	}
}

// TestJudgeStep: a step holds only with a clean run and its p99 under
// the limit; a failed one says why.
func TestJudgeStep(t *testing.T) {
	server := func(p99 float64) *phaseReport {
		return &phaseReport{WindowSeconds: 10, CPUSeconds: 5, PacketsPerSec: 1000, LatencyP99: p99, SkippedSends: 3}
	}
	tests := []struct {
		name     string
		rep      Report
		held     bool
		failures string // in the failures
	}{
		{"clean and fast", Report{Server: server(4)}, true, ""},
		{"slow", Report{Server: server(10)}, false, "p99 10.00 ms, not under 10 ms"},
		{"lost packets", Report{Server: server(4), Failures: []string{"server: loss 0.1%"}}, false, "loss"},
		{"nothing measured", Report{}, false, "nothing was measured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := judgeStep(&tt.rep, 10*time.Millisecond)
			got := strings.Join(st.Failures, "; ")
			if st.Held != tt.held || !strings.Contains(got, tt.failures) {
				t.Errorf("judgeStep = held %v, failures %q; want %v, %q", st.Held, got, tt.held, tt.failures)
			}
			if tt.rep.Server != nil && (st.CPUCores != 0.5 || st.SkippedSends != 3 || st.ForwardedPerSec != 1000) {
				t.Errorf("judgeStep = cpu %.2f cores, skipped %d, forwarded %.0f/s; want 0.5 (5 s in a 10 s window), 3, 1000",
					st.CPUCores, st.SkippedSends, st.ForwardedPerSec)
			}
		})
	}
}

// TestCapacitySmoke runs the search against the real binary at a tiny
// scale (-start 2, -max 8, 2 s steps): a fan-out and one meeting of 5.
// On a loaded machine a step may fail; either way the steps must be the
// search's (replayed from their verdicts), each measured, and the figure
// the last step that held.
func TestCapacitySmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	cfg := smokeConfig(t, "capacity", buildServer(t))
	cfg.SetScenario("capacity")
	cfg.Shapes, cfg.CapacityStart, cfg.CapacityMax, cfg.GOMAXPROCS = []string{ShapeFanout, ShapeMeeting5}, 2, 8, 1
	cfg.Media.VideoKbps = 440
	cfg.Timing = Timing{Warmup: time.Second, Window: 2 * time.Second, Grace: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run(capacity) = %v", err)
	}
	var b bytes.Buffer
	rep.Write(&b, false)
	t.Logf("report:\n%s", b.String())
	if len(rep.Capacity) != 2 {
		t.Fatalf("capacity searches = %d; want 2 (fanout, meeting-5)", len(rep.Capacity))
	}
	checkSearch(t, rep.Capacity[0], 1, 2, 8, func(n int) int { return n + 1 })
	checkSearch(t, rep.Capacity[1], 5, 1, 1, func(n int) int { return 5 * n })
	b.Reset()
	if err := rep.Write(&b, true); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Capacity []capacityReport `json:"capacity"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Capacity) != 2 || back.Capacity[0].Capacity != rep.Capacity[0].Capacity {
		t.Errorf("-json capacity = %+v, %v; want the two searches", back.Capacity, err)
	}
}

// checkSearch replays search on the steps' verdicts: it must take the
// same steps (sessions(n) participants for a step of n units) and find
// what the report says, every step measured.
func checkSearch(t *testing.T, c capacityReport, per, start, limit int, sessions func(int) int) {
	t.Helper()
	if c.GOMAXPROCS != 1 {
		t.Errorf("%s: GOMAXPROCS = %d; want 1", c.Shape, c.GOMAXPROCS)
	}
	i := 0
	good, bad, err := searchCapacity(context.Background(), start, limit, func(_ context.Context, n int) (bool, error) {
		if i >= len(c.Steps) {
			return false, errors.New("the report has fewer steps than the search takes")
		}
		st := c.Steps[i]
		i++
		if st.Participants != sessions(n) {
			t.Errorf("%s: step %d has %d participants; want %d", c.Shape, i, st.Participants, sessions(n))
		}
		measured := st.Joined == st.Participants && st.ForwardedPerSec > 0 && st.CPUCores > 0 && st.RSSMiB > 0 && st.Goroutines > 0
		if st.Held && !measured || !st.Held && len(st.Failures) == 0 {
			t.Errorf("%s: step %+v; want a held step measured, a failed one with its reasons", c.Shape, st)
		}
		return st.Held, nil
	})
	if err != nil || i != len(c.Steps) {
		t.Fatalf("%s: replaying %d steps: %v after %d", c.Shape, len(c.Steps), err, i)
	}
	if c.Capacity != good*per || c.FirstFailed != bad*per || c.AtCeiling != (good > 0 && bad == 0) {
		t.Errorf("%s: capacity %d, first failed %d, at ceiling %v; the steps say %d, %d", c.Shape, c.Capacity, c.FirstFailed, c.AtCeiling, good*per, bad*per)
	}
}
