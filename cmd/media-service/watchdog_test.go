package main

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestWatchdogEndsAHungDrain: in a build whose PeerConnection close never
// returns (the faulthang tag, see edge/closepeer_faulthang.go), a drain
// that reaches its deadline with a session left hangs while closing it.
// The watchdog must end the process with exit status 2 and say so in the
// log, at the drain timeout plus its margin plus the flush timeout, and
// not before.
func TestWatchdogEndsAHungDrain(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "media-service-faulthang")
	if out, err := exec.Command("go", "build", "-tags", "faulthang", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build with -tags faulthang: %v\n%s", err, out)
	}
	const drain = time.Second
	watchdog := drain + watchdogMargin + flushTimeout
	s := startBinary(t, bin, "MEDIA_DRAIN_TIMEOUT="+drain.String())
	ws := joinDev(t, s, "hang", "alice")
	defer ws.Close()

	sent := time.Now()
	s.Signal(t, syscall.SIGTERM)
	s.WaitFor(t, "closing_all_sessions", drain+5*time.Second)
	expired := s.WaitFor(t, "drain_watchdog_expired", watchdog+5*time.Second)
	took := time.Since(sent)
	if expired["after"] != watchdog.String() {
		t.Errorf("drain_watchdog_expired after = %v; want %s", expired["after"], watchdog)
	}
	if code := s.WaitExit(t, 5*time.Second); code != 2 {
		t.Errorf("exit code = %d; want 2 (watchdog)", code)
	}
	if took < watchdog {
		t.Errorf("watchdog fired %s after SIGTERM; want no earlier than %s", took, watchdog)
	}
	for _, e := range s.Log() {
		if e.Msg() == "server_stopped" {
			t.Errorf("log has server_stopped; the hung close must keep the drain from finishing")
		}
	}
}
