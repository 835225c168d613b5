package sfu

import (
	"sync"
	"time"
)

// keyframeRequester sends keyframe requests to one publisher at most once
// per interval. A request that comes while one was just sent is not
// dropped but held and sent when the interval ends, so a subscriber that
// joins right after another still gets a fresh keyframe; any further
// requests in that window are folded into the held one (throttled).
//
// It has no goroutine of its own: a request sends at once from the
// caller's goroutine, and a held one is sent by a timer. request may be
// called from any goroutine.
type keyframeRequester struct {
	interval  time.Duration
	send      func() // writes the PLI to the publisher
	throttled func() // counts a folded request

	mu      sync.Mutex     // guards the fields below
	last    time.Time      // when the last PLI was sent; zero before the first
	held    bool           // a request waits for the end of the interval
	timer   *time.Timer    // sends the held request
	stopped bool           // no more PLIs
	firing  sync.WaitGroup // a scheduled timer callback
}

func newKeyframeRequester(interval time.Duration, send, throttled func()) *keyframeRequester {
	return &keyframeRequester{interval: interval, send: send, throttled: throttled}
}

// request asks for a keyframe; it never waits for the interval.
func (k *keyframeRequester) request() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	if k.held {
		k.mu.Unlock()
		k.throttled()
		return
	}
	wait := k.interval - time.Since(k.last)
	if k.last.IsZero() || wait <= 0 {
		k.last = time.Now()
		k.mu.Unlock()
		k.send()
		return
	}
	k.held = true
	k.firing.Add(1)
	k.timer = time.AfterFunc(wait, k.fire)
	k.mu.Unlock()
}

// fire sends the held request.
func (k *keyframeRequester) fire() {
	defer k.firing.Done()
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.held = false
	k.last = time.Now()
	k.mu.Unlock()
	k.send()
}

// stop cancels a held request and waits for a timer callback that already
// started; later requests do nothing.
func (k *keyframeRequester) stop() {
	k.mu.Lock()
	k.stopped = true
	if k.held && k.timer.Stop() {
		k.firing.Done()
	}
	k.mu.Unlock()
	k.firing.Wait()
}
