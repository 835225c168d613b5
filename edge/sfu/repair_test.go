package sfu

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestRepairBudget: without a rate every resend passes; with one, what
// passes over a second of NACKs asking for far more is the bucket's
// depth and the rate, and a lifted limit lets everything pass again.
func TestRepairBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		r := newRepairBudget(func() time.Duration { return time.Since(epoch) })
		const size = 1000
		for i := range 1000 {
			if !r.allow(size) {
				t.Fatalf("resend %d refused with no limit set", i)
			}
		}
		const rate = 300e3 // bit/s: a congested estimate
		r.setRate(repairShare * rate)
		passed := 0
		for range 100 { // 250 resends a second asked for, for a second
			for range 25 {
				if r.allow(size) {
					passed += size
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		want := repairShare*rate/8 + max(repairShare*rate/8*repairDepth.Seconds(), paceMinDepth)
		if float64(passed) > want+size || float64(passed) < want-2*size {
			t.Errorf("resent %d bytes in 1 s at a %.0f bit/s budget; want about %.0f", passed, repairShare*rate, want)
		}
		r.setRate(0)
		if !r.allow(size) {
			t.Error("resend refused after the limit was lifted")
		}
	})
}
