package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// churnCycles is the number of join/exchange/leave cycles: 50 in the
// normal suite, 2,000 with MEDIA_SOAK=1 (`just soak`).
func churnCycles() int {
	if os.Getenv("MEDIA_SOAK") != "" {
		return 2000
	}
	return 50
}

// serverState is what the churn compares before and after: the real
// service process as its ops endpoint reports it.
type serverState struct {
	goroutines, fds, heap, sessions, leak float64
	nackBuf                               float64 // off-heap NACK histories, bytes
}

// sampleAfterGC forces two garbage collections in the service (pprof's
// heap profile with gc=1 runs one; the second frees what the first left
// in sync.Pool victim caches) and reads its numbers.
func sampleAfterGC(t *testing.T, s *service) serverState {
	t.Helper()
	for range 2 {
		if code, _ := get(t, "http://"+s.OpsAddr+"/debug/pprof/heap?gc=1"); code != 200 {
			t.Fatalf("GET /debug/pprof/heap?gc=1 = %d", code)
		}
	}
	return serverState{
		goroutines: metricSum(t, s, "go_goroutines"),
		fds:        metricSum(t, s, "process_open_fds"),
		heap:       metricSum(t, s, "go_memstats_heap_alloc_bytes"),
		sessions:   metricSum(t, s, "media_sessions_active"),
		leak:       metricSum(t, s, "media_potential_goroutine_leak"),
		nackBuf:    metricSum(t, s, "media_nack_buffer_bytes"),
	}
}

// buildMediaload builds the load generator, whose churn scenario the soak
// runs, as `just load` does.
func buildMediaload(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mediaload")
	out, err := exec.Command("go", "build", "-o", bin, "../mediaload").CombinedOutput()
	if err != nil {
		t.Fatalf("go build mediaload: %v\n%s", err, out)
	}
	return bin
}

// runChurn runs `mediaload churn` against s for cycles, with extra
// flags, and checks its own report passed.
func runChurn(t *testing.T, s *service, mediaload string, cycles int, extra ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cycles)*2*time.Second+2*time.Minute)
	defer cancel()
	args := append([]string{"churn",
		"-url", "http://" + s.HTTPAddr, "-ops-url", "http://" + s.OpsAddr, "-dev-token",
		"-cycles", strconv.Itoa(cycles), "-parallel", "4", "-hold", "200ms",
		"-video-kbps", "200", "-settle", "30s", "-json", "-quiet"}, extra...)
	cmd := exec.CommandContext(ctx, mediaload, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var rep struct {
		OK       bool     `json:"ok"`
		Failures []string `json:"failures"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("mediaload churn -cycles %d: %v; report %q: %v", cycles, err, out, jerr)
	}
	if err != nil || !rep.OK {
		for _, e := range s.Log() {
			if e.Msg() == "offer_refused" || e.Msg() == "answer_refused" {
				t.Logf("server: %v", e)
			}
		}
		t.Fatalf("mediaload churn -cycles %d failed: %v %q", cycles, err, rep.Failures)
	}
}

// TestChurnSoak runs join/exchange/leave cycles through `mediaload churn`
// against the real service and checks it returns to where it was: no
// session left, goroutines within 5 of the start, open files back to the
// start, live heap within 10% (after GC), every NACK history freed, and
// no leak suspected by the goroutine-leak detector, which runs here with a
// 200 ms sample interval so its baseline is fixed during the warm-up and
// the churn is judged.
func TestChurnSoak(t *testing.T) {
	mediaload := buildMediaload(t)
	s := startService(t, "MEDIA_ICE_BIND_ADDR=127.0.0.1", "MEDIA_TURN_ENABLED=false",
		"MEDIA_LEAK_SAMPLE_INTERVAL=200ms", "MEDIA_LEAK_BASELINE_SAMPLE=5")
	runChurn(t, s, mediaload, 4) // warm-up: lazily built tables and pools belong to the baseline
	before := settled(t, s, nil)
	cycles := churnCycles()
	runChurn(t, s, mediaload, cycles)
	after := settledOrAgain(t, s, &before, func() { runChurn(t, s, mediaload, cycles) })
	t.Logf("after %d cycles: goroutines %v -> %v, fds %v -> %v, heap %.0f KiB -> %.0f KiB",
		cycles, before.goroutines, after.goroutines, before.fds, after.fds, before.heap/1024, after.heap/1024)
	checkFlat(t, before, after, cycles)
}

// checkFlat checks the service is back where it was before cycles of churn.
func checkFlat(t *testing.T, before, after serverState, cycles int) {
	t.Helper()
	if after.sessions != 0 {
		t.Errorf("media_sessions_active = %v after the churn; want 0", after.sessions)
	}
	if after.goroutines > before.goroutines+5 {
		t.Errorf("goroutines = %v after %d cycles; want within 5 of %v", after.goroutines, cycles, before.goroutines)
	}
	if after.fds > before.fds {
		t.Errorf("open fds = %v after %d cycles; want back to %v", after.fds, cycles, before.fds)
	}
	if after.heap > 1.1*before.heap {
		t.Errorf("live heap = %.0f KiB after %d cycles; want within 10%% of %.0f KiB", after.heap/1024, cycles, before.heap/1024)
	}
	if after.leak != 0 {
		t.Errorf("media_potential_goroutine_leak = %v after the churn; want 0", after.leak)
	}
	// The histories are outside the heap: the heap check cannot see them.
	if after.nackBuf != 0 {
		t.Errorf("media_nack_buffer_bytes = %v after the churn; want 0, every history unmapped", after.nackBuf)
	}
}

// settledOrAgain is settled after a round of cycles, and when the heap
// stayed more than 10 % above before, runs the round once more and judges
// that one from where the first ended: what a round makes once (a
// metric's series first seen in it, a pool's first fill, on a loaded host
// a path the warm-up happened not to take) raises the heap once, a leak
// raises it every round.
func settledOrAgain(t *testing.T, s *service, before *serverState, round func()) serverState {
	t.Helper()
	after := settled(t, s, before)
	if after.heap <= 1.1*before.heap {
		return after
	}
	t.Logf("live heap %.0f KiB -> %.0f KiB after a round: once more, to tell a one-time growth from a leak", before.heap/1024, after.heap/1024)
	*before = after
	round()
	return settled(t, s, before)
}

// settled samples the service until it is idle (no sessions) and, when
// want is given, until goroutines, files and heap are back within bounds
// of it or 30 s have passed; it returns the last sample.
func settled(t *testing.T, s *service, want *serverState) serverState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := sampleAfterGC(t, s)
		idle := st.sessions == 0 && st.nackBuf == 0
		if want != nil {
			idle = idle && st.goroutines <= want.goroutines+5 && st.fds <= want.fds && st.heap <= 1.1*want.heap
		}
		if idle || time.Now().After(deadline) {
			return st
		}
		time.Sleep(250 * time.Millisecond)
	}
}
