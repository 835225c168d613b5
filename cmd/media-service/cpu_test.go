package main

import (
	"runtime"
	"testing"
	"time"
)

// TestCPUShare: a process that spins one goroutine reports a share above
// zero and never above one; the first sample has nothing to compare with.
func TestCPUShare(t *testing.T) {
	if _, ok := processCPU(); !ok {
		t.Skip("the platform does not report process CPU time")
	}
	var c cpuShare
	if got := c.sample(); got != 0 {
		t.Fatalf("first sample() = %v; want 0", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		spin(50 * time.Millisecond)
		got := c.sample()
		if got > 1 {
			t.Fatalf("sample() = %v; want at most 1", got)
		}
		if got > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sample() after spinning = %v; want above 0 (GOMAXPROCS %d)", got, runtime.GOMAXPROCS(0))
		}
	}
}

// spin keeps one CPU busy for d.
func spin(d time.Duration) {
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
	}
	_ = n
}
