package sfu

import (
	"sync"
	"time"
)

// Repair budget. A subscriber's NACKs are answered at most
// Config.RetransmitRate packets a second per subscription, which bounds
// what one NACK can make the instance send but not what a congested
// downlink can carry: 250 resent packets a second are up to 2 Mbit/s,
// and on a 300 kbit/s link whose loss makes the subscriber ask for more
// every round trip, the resends crowd out the media they repair. Read
// from the bandwidth trace of a Chromium page capped at 300 kbit/s: for
// ten seconds after the cap the connection resent 0.4 to 3.2 Mbit/s, the
// estimator counted up to 100 % of what it stamped as lost, the estimate
// sat under one camera's lowest layer, and the camera left playing
// decoded nothing for seconds. So on a congested connection whose
// allocation has paused video (its link does not carry even every
// lowest layer, and a resend takes the place of media kept) the resends
// of all its subscriptions share a token bucket filled at repairShare
// of the estimate; a NACK beyond it is left unanswered (the receiver
// asks again, or a keyframe repairs). On any other connection the
// budget does not apply. Applied to every congested connection, it left
// a subscriber capped at 400 kbit/s with an estimate of 470 to 550
// kbit/s that never went under the cap (TestCongestionCappedSubscriber):
// there the first cuts lean on the loss of the resends at the cap.
const (
	// repairShare is the share of the estimate resends may take: the
	// allocation fills the estimate with media, and a link losing more
	// than a tenth of it is better served by a lower layer than by
	// repairs.
	repairShare = 0.1
	// repairDepth is the bucket's size in time at its rate (at least
	// paceMinDepth, two full packets): a loss burst's NACK is answered at
	// once up to this much.
	repairDepth = 250 * time.Millisecond
)

// repairBudget is one connection's resend token bucket. mu guards it:
// the rate is set on the feedback goroutine, and resends take from it on
// the SRTCP reader's.
type repairBudget struct {
	now func() time.Duration

	mu sync.Mutex
	b  bucket
}

func newRepairBudget(now func() time.Duration) *repairBudget {
	return &repairBudget{now: now, b: bucket{span: repairDepth}}
}

// setRate sets the rate in bit/s the bucket fills at; 0 lifts the limit.
func (r *repairBudget) setRate(bps float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b.set(r.now(), bps)
}

// allow reports whether a resend of size bytes fits, and takes it.
func (r *repairBudget) allow(size int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.b.rate == 0 {
		return true
	}
	r.b.refill(r.now())
	if r.b.tokens < float64(size) {
		return false
	}
	r.b.tokens -= float64(size)
	return true
}
