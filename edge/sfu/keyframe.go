package sfu

import "time"

// keyframeRequester sends keyframe requests to one publisher at most once
// per interval. A request that arrives while one was just sent is not
// dropped but held and sent when the interval ends, so a subscriber that
// joins right after another still gets a fresh keyframe; any further
// requests in that window are folded into the held one (throttled).
//
// Its goroutine (run) owns the timer; request may be called from any
// goroutine.
type keyframeRequester struct {
	interval  time.Duration
	pending   chan struct{} // capacity 1: a held request
	send      func()        // writes the PLI to the publisher
	throttled func()        // counts a folded request
}

func newKeyframeRequester(interval time.Duration, send, throttled func()) *keyframeRequester {
	return &keyframeRequester{interval: interval, pending: make(chan struct{}, 1), send: send, throttled: throttled}
}

// request asks for a keyframe; it never blocks.
func (k *keyframeRequester) request() {
	select {
	case k.pending <- struct{}{}:
	default:
		k.throttled()
	}
}

// run sends held requests, waiting interval after each, until stop closes.
func (k *keyframeRequester) run(stop <-chan struct{}) {
	t := time.NewTimer(k.interval)
	t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-k.pending:
		}
		k.send()
		t.Reset(k.interval)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}
