package main

import (
	"os"
	"testing"
)

// flapCycles is the number of churn cycles with network flaps: 10 in the
// normal suite, 1,000 with MEDIA_SOAK=1 (`just soak`). Each cycle's
// participant flaps its network twice (see internal/load/flap.go).
func flapCycles() int {
	if os.Getenv("MEDIA_SOAK") != "" {
		return 1000
	}
	return 10
}

// TestFlapSoak runs churn cycles whose participants each lose their
// signaling connection (a TCP reset) and change networks (ICE restarts on
// both connections) twice, resuming as the same participant every time,
// through `mediaload churn -flaps` against the real service, and checks
// the service returns to where it was: no session left, goroutines within
// 5, open files back, live heap within 10%, no leak suspected.
func TestFlapSoak(t *testing.T) {
	mediaload := buildMediaload(t)
	s := startService(t, "MEDIA_ICE_BIND_ADDR=127.0.0.1", "MEDIA_TURN_ENABLED=false",
		"MEDIA_LEAK_SAMPLE_INTERVAL=200ms", "MEDIA_LEAK_BASELINE_SAMPLE=5")
	runChurn(t, s, mediaload, 4, "-flaps", "2") // warm-up, as in TestChurnSoak
	before := settled(t, s, nil)
	cycles := flapCycles()
	runChurn(t, s, mediaload, cycles, "-flaps", "2")
	after := settledOrAgain(t, s, &before, func() { runChurn(t, s, mediaload, cycles, "-flaps", "2") })
	t.Logf("after %d cycles of 2 flaps: goroutines %v -> %v, fds %v -> %v, heap %.0f KiB -> %.0f KiB",
		cycles, before.goroutines, after.goroutines, before.fds, after.fds, before.heap/1024, after.heap/1024)
	checkFlat(t, before, after, cycles)
}
