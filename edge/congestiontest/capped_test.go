package congestiontest

import (
	"context"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/netlab"
	"github.com/media-service/media-service/internal/testenv"
)

// TestCappedSubscriber: a 2.5 Mbit/s simulcast camera and a microphone go
// to two subscribers of the real binary; one's downlink is capped at
// 400 kbit/s with tc. Within 5 s (and a margin for a loaded machine) the
// server drops it below the top layer; after that its media loses under
// 2 %, its audio never stops (netlab.AudioKeptPace),
// and the uncapped one stays on the top layer with no loss and no
// subscription_state. Lifted, the cap's subscriber is back on the top
// layer within 15 s (and a margin), with at most 2 layer changes in any
// 10 s.
func TestCappedSubscriber(t *testing.T) {
	testenv.SkipTimedLink(t, "about a minute")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLab(t)
	capped := newViewer(ctx, t, l, "capped", true)
	free := newViewer(ctx, t, l, "free", false)
	publish(ctx, t, l.join(ctx, t, "pub", false, client.Options{}), camera)
	pub := publisherID(t, capped)
	until(t, "both subscribers on the top layer", 30*time.Second, func() bool {
		return capped.layer(pub) == 2 && free.layer(pub) == 2
	})

	const capKbps = 400
	if err := l.h.Cap(capKbps, 0, 0); err != nil {
		t.Fatal(err)
	}
	// The targets (5 s, 15 s) are logged; what is asserted allows
	// a loaded 2-core CI host a margin.
	converged, dropped := convergence(t, capped, pub, 8*time.Second)
	settled := time.Now()
	t.Logf("converged %s after the cap, below the top layer after %s (required: 5 s, with a margin for a loaded host)",
		converged.Round(time.Millisecond), dropped.Round(time.Millisecond))

	var sum [2]tally
	var overshoot float64
	capped.resetAudioGap()
	free.resetAudioGap()
	for range 10 {
		w := window(time.Second, capped, free)
		sum[0], sum[1] = sum[0].plus(w[0]), sum[1].plus(w[1])
		overshoot = max(overshoot, w[0].kbps(time.Second)/capKbps)
		t.Logf("capped: %4.0f kbit/s, loss %.1f%%, %d audio (uncapped %d), layer %d",
			w[0].kbps(time.Second), w[0].loss()*100, w[0].audio, w[1].audio, capped.layer(pub))
		if got := free.layer(pub); got != 2 {
			t.Errorf("uncapped subscriber on layer %d while the other is capped; want 2", got)
		}
	}
	t.Logf("capped: %.0f kbit/s, loss %.2f%%, overshoot %.2f of the cap, layer %d; uncapped: %.0f kbit/s, loss %.2f%%",
		sum[0].kbps(10*time.Second), sum[0].loss()*100, overshoot, capped.layer(pub), sum[1].kbps(10*time.Second), sum[1].loss()*100)
	if sum[0].loss() >= 0.02 {
		t.Errorf("capped subscriber lost %.2f%% of its media after convergence; want under 2%%", sum[0].loss()*100)
	}
	if sum[1].loss() >= 0.02 {
		t.Errorf("uncapped subscriber lost %.2f%% of its media; want under 2%%", sum[1].loss()*100)
	}
	// tbf queues at most 50 ms here (netlab's default latency).
	if err := netlab.AudioKeptPace(sum[0].audio, sum[1].audio, capped.audioGap(), free.audioGap(), 300*time.Millisecond); err != nil {
		t.Errorf("capped subscriber: %v", err)
	}
	if n := len(capped.stateLog()); n == 0 {
		t.Error("capped subscriber got no subscription_state; want its track capped")
	}

	if err := l.h.Uncap(); err != nil {
		t.Fatal(err)
	}
	lifted := time.Now()
	back := until(t, "the capped subscriber back on the top layer", 20*time.Second, func() bool { return capped.layer(pub) == 2 })
	t.Logf("top layer %s after the cap was lifted (required: 15 s, with a margin)", back.Round(time.Millisecond))
	// A last look at a steady, uncapped link for the change rate.
	time.Sleep(5 * time.Second)
	changes := capped.changesSince(pub, settled)
	t.Logf("capped subscriber's layer changes after convergence: %d (cap lifted at %s)", len(changes), lifted.Format("15:04:05.000"))
	for _, c := range capped.changeLog(pub) {
		t.Logf("  %s to layer %d", c.at.Format("15:04:05.000"), c.layer)
	}
	for _, s := range capped.stateLog() {
		t.Logf("  subscription_state %q %q", s.Reason, s.Quality)
	}
	checkChangeRate(t, "capped subscriber", changes)
	if got := free.changesSince(pub, settled.Add(-converged)); len(got) != 0 {
		t.Errorf("uncapped subscriber's layer changed %d times while the other was capped; want never", len(got))
	}
	if got := free.stateLog(); len(got) != 0 {
		t.Errorf("uncapped subscriber got subscription_state %+v; want none", got[0])
	}
}

// TestSubscriptionStatePausedThenResumed: a subscriber whose downlink
// cannot carry even the lowest layer next to its audio is sent
// subscription_state reason congestion for the camera, keeps its audio,
// and once the cap is lifted is told the track resumed (a quality) and
// receives video again.
func TestSubscriptionStatePausedThenResumed(t *testing.T) {
	testenv.SkipTimedLink(t, "about a minute")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLab(t)
	capped := newViewer(ctx, t, l, "capped", true)
	publish(ctx, t, l.join(ctx, t, "pub", false, client.Options{}), camera)
	pub := publisherID(t, capped)
	until(t, "the subscriber on the top layer", 30*time.Second, func() bool { return capped.layer(pub) == 2 })

	if err := l.h.Cap(100, 0, 0); err != nil {
		t.Fatal(err)
	}
	paused := until(t, "subscription_state reason congestion", 20*time.Second, func() bool {
		return lastState(capped).Reason == sfu.PausedCongestion
	})
	t.Logf("paused %s after a 100 kbit/s cap", paused.Round(time.Millisecond))
	time.Sleep(time.Second) // what was queued before the pause drains
	w := window(3*time.Second, capped)[0]
	if w.video != 0 || w.audio < 3*50/2 {
		t.Errorf("paused: %d video and %d audio packets in 3 s; want no video and at least half the audio", w.video, w.audio)
	}

	if err := l.h.Uncap(); err != nil {
		t.Fatal(err)
	}
	resumed := until(t, "subscription_state with a quality", 30*time.Second, func() bool {
		s := lastState(capped)
		return s.Reason == "" && s.Quality != ""
	})
	t.Logf("resumed %s after the cap was lifted: %+v", resumed.Round(time.Millisecond), lastState(capped))
	until(t, "video again", 10*time.Second, func() bool { return window(500*time.Millisecond, capped)[0].video > 0 })
}

// lastState is the last subscription_state v was sent, or a zero one.
func lastState(v *viewer) signal.Message {
	s := v.stateLog()
	if len(s) == 0 {
		return signal.Message{}
	}
	return s[len(s)-1]
}

// convergence waits until the capped viewer v receives publisher pub
// below the top layer with under 2 % of its media lost over the last
// second, and returns how long after the call that was, and when the
// layer first dropped.
func convergence(t *testing.T, v *viewer, pub string, limit time.Duration) (converged, dropped time.Duration) {
	t.Helper()
	start := time.Now()
	const step = 100 * time.Millisecond
	var last [10]tally // the trailing second, in steps
	for i := 0; ; i++ {
		time.Sleep(step)
		now := v.total()
		w := now.sub(last[i%len(last)])
		last[i%len(last)] = now
		low := v.layer(pub) < 2
		if low && dropped == 0 {
			dropped = time.Since(start)
		}
		if low && i >= len(last) && w.loss() < 0.02 && w.video > 0 {
			return time.Since(start), dropped
		}
		if time.Since(start) > limit {
			t.Fatalf("not converged within %s: layer %d, loss %.1f%% in the last second", limit, v.layer(pub), w.loss()*100)
		}
	}
}
