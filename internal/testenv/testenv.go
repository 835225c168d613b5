// Package testenv decides what a test does when the machine lacks
// something it needs (a browser, promtool, an IPv6 loopback): skip it
// locally, so a developer's run stays green on a bare machine, but fail it
// under CI=true, where a skipped test would pass a build that nothing
// checked. .ci/run sets CI=true and installs what the tests need.
package testenv

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where every
// capability a test needs must be present.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing ends the test because the machine lacks a capability: a skip
// with the message locally, a failure under CI=true. The message should
// say what is missing and how to get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true: a missing capability fails the run)", msg)
	} else {
		t.Skip(msg)
	}
}

// Overloaded reports the host's 1-minute load average and whether it is
// above 2 runnable tasks per CPU. A test that times a real network path
// logs rather than judges what such a host's own delays decide: a media
// server rightly reads a starved host's late packets as congestion, on
// every path. It reports 0, false where the load cannot be read.
func Overloaded() (load float64, over bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	load, ok := parseLoad(string(b))
	return load, ok && load > 2*float64(runtime.NumCPU())
}

// parseLoad reads the 1-minute load average, the first field of
// /proc/loadavg.
func parseLoad(s string) (float64, bool) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, false
	}
	load, err := strconv.ParseFloat(f[0], 64)
	return load, err == nil
}

// SkipTimedLink skips a test that times media over a real link (a capped
// or cut path) where its timing would mean nothing: under -short, since
// it runs for runsFor, and under the race detector. .ci/run runs such
// tests in a step of their own without -race.
func SkipTimedLink(t testing.TB, runsFor string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs for " + runsFor)
	}
	if RaceEnabled {
		t.Skip("times a real link: run without -race")
	}
}
