package sfu

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestKeyframeThrottle drives the requester on a fake clock: requests are
// sent at most once per interval, one request in a window is held to its
// end, and the rest are counted as throttled.
func TestKeyframeThrottle(t *testing.T) {
	const ms = time.Millisecond
	const interval = 500 * ms
	for _, tc := range []struct {
		name          string
		at            []time.Duration // request times from the start
		wantSent      []time.Duration // PLI times from the start
		wantThrottled int
	}{
		{"one request is sent at once", []time.Duration{0}, []time.Duration{0}, 0},
		{"burst: one now, one held, rest folded",
			[]time.Duration{0, 0, 0, 0, 0}, []time.Duration{0, interval}, 3},
		{"request within the window waits for its end",
			[]time.Duration{0, 100 * ms}, []time.Duration{0, interval}, 0},
		{"requests a window apart are both sent at once",
			[]time.Duration{0, 600 * ms}, []time.Duration{0, 600 * ms}, 0},
		{"steady 8 per second becomes 2 per second",
			[]time.Duration{0, 120 * ms, 240 * ms, 360 * ms, 480 * ms, 600 * ms, 720 * ms, 840 * ms, 960 * ms},
			[]time.Duration{0, interval, 2 * interval}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var sent []time.Duration
				throttled := 0
				k := newKeyframeRequester(interval,
					func() { sent = append(sent, time.Since(start)) },
					func() { throttled++ })
				for _, at := range tc.at {
					time.Sleep(at - time.Since(start)) // fake clock: advances instantly
					k.request()
					synctest.Wait()
				}
				time.Sleep(3 * interval)
				synctest.Wait()
				k.stop()
				if !slices.Equal(sent, tc.wantSent) {
					t.Errorf("PLIs sent at %v; want %v", sent, tc.wantSent)
				}
				if throttled != tc.wantThrottled {
					t.Errorf("throttled = %d; want %d", throttled, tc.wantThrottled)
				}
			})
		})
	}
}

// TestKeyframeStopCancelsHeld: stop drops a held request and ignores later
// ones.
func TestKeyframeStopCancelsHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sent := 0
		k := newKeyframeRequester(500*time.Millisecond, func() { sent++ }, func() {})
		k.request()
		k.request() // held
		k.stop()
		k.request()
		time.Sleep(time.Second)
		synctest.Wait()
		if sent != 1 {
			t.Fatalf("PLIs sent = %d; want 1 (the held one cancelled by stop)", sent)
		}
	})
}

// TestKeyframeAfterPublisherOutage: a publisher whose video stops for
// longer than outageGap (its network was gone) and comes back gets a
// keyframe request as its first packet after the silence arrives, with no
// subscriber asking: the subscribers' decoders lost the frames meanwhile.
func TestKeyframeAfterPublisherOutage(t *testing.T) {
	h := newHarness(t, Config{PLIInterval: 10 * time.Millisecond})
	pub := h.newPublisher(t)
	plis := pub.readPLIs(t)
	pub.publications(t)
	pub.video.send(t, 50)
	time.Sleep(outageGap + outageGap/4) // the outage: network time, not a wait for a state
	back := time.Now()
	pub.video.send(t, 1)
	awaitPLISince(t, plis, back, "the video's return after a silence")
}

// awaitPLISince waits for a PLI at or after since, and fails the test
// after waitFor without one.
func awaitPLISince(t *testing.T, plis <-chan time.Time, since time.Time, what string) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case at := <-plis:
			if !at.Before(since) {
				return
			}
		case <-deadline:
			t.Fatalf("no keyframe request within %s of %s", waitFor, what)
		}
	}
}

// TestKeyframeAfterSubscriberOutage: a subscriber's network is gone for
// longer than outageGap (a relay between it and the server drops
// everything) while the publisher keeps sending. When its feedback shows
// the path back, the server asks the publisher for a keyframe, with no
// request from the subscriber: its decoder lost the frames meanwhile.
func TestKeyframeAfterSubscriberOutage(t *testing.T) {
	h := newHarness(t, Config{PLIInterval: 10 * time.Millisecond})
	pub := h.newPublisher(t)
	plis := pub.readPLIs(t)
	video, _ := pub.publications(t)
	pub.feed(t, 10*time.Millisecond, false)

	relay := newCapRelay(t, h.engine.UDPAddr())
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribeVia(t, relay, h.engine.UDPAddr().Port, video)
	countPackets(awaitKinds(t, sub, 1)[webrtc.RTPCodecTypeVideo])
	until(t, "the subscriber's feedback measuring an estimate", waitFor, func() bool { return sub.conn.Estimate() > 0 })

	relay.cut.Store(true)
	time.Sleep(outageGap + outageGap/2) // the outage: network time, not a wait for a state
	back := time.Now()
	relay.cut.Store(false)
	awaitPLISince(t, plis, back, "the subscriber's path coming back after an outage")
}
