package edge

import (
	"strconv"
	"testing"
	"time"
)

// TestRevocationsBounded: a revoked token stays refused until it
// expires; at maxRevoked entries, the expired go first, then the one
// that expires soonest, and the set never grows past the bound.
func TestRevocationsBounded(t *testing.T) {
	now := time.Now()
	r := newRevocations()
	r.revoke("soon", now.Add(time.Minute), now)
	if !r.revoked("soon", now) || r.revoked("other", now) {
		t.Fatal("revoked(soon) = false or revoked(other) = true just after revoking soon")
	}
	if r.revoked("soon", now.Add(2*time.Minute)) {
		t.Error("revoked(soon) after its expiry = true; want false")
	}
	r.revoke("soon", now.Add(time.Minute), now)
	for i := range maxRevoked - 1 {
		r.revoke(strconv.Itoa(i), now.Add(time.Hour+time.Duration(i)*time.Second), now)
	}
	r.revoke("late", now.Add(2*time.Hour), now) // full: soon, the soonest to expire, goes
	if r.revoked("soon", now) || !r.revoked("late", now) || !r.revoked("0", now) {
		t.Errorf("after overflow: soon %v, late %v, 0 %v; want false, true, true",
			r.revoked("soon", now), r.revoked("late", now), r.revoked("0", now))
	}
	r.mu.Lock()
	n := len(r.m)
	r.mu.Unlock()
	if n != maxRevoked {
		t.Errorf("%d entries; want the bound %d", n, maxRevoked)
	}
}
