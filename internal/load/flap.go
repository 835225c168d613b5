package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// Network flaps (churn with -flaps): a participant's network changes as
// a phone's does between Wi-Fi and mobile data. Its signaling connection
// is reset (TCP RST, no close frame), so the client must resume the
// session within the server's grace, and both its connections restart
// ICE; the flap is over when the client has resumed, both connections are
// up, and media reaches the participant again. A server that keeps
// anything per flap shows it in the churn's before and after.

// flapTimeout bounds one flap, from the reset until media flows again.
const flapTimeout = 15 * time.Second

// flapResult counts the flaps of a run and how long media took to come
// back after each.
type flapResult struct {
	done, failed atomic.Int64
	back         durations
	mu           sync.Mutex
	firstErr     error
}

func (f *flapResult) fail(err error) {
	f.failed.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.firstErr == nil {
		f.firstErr = err
	}
}

// flapReport is the churn report's part about network flaps.
type flapReport struct {
	Flaps       int     `json:"flaps"`
	Failed      int     `json:"failed"`
	FirstError  string  `json:"first_error,omitempty"`
	MediaBackMs float64 `json:"media_back_p50_ms"` // from the reset until media arrived again
	MediaMaxMs  float64 `json:"media_back_max_ms"`
}

func (f *flapResult) report() *flapReport {
	r := &flapReport{Flaps: int(f.done.Load()), Failed: int(f.failed.Load()),
		MediaBackMs: ms(f.back.quantile(0.5)), MediaMaxMs: ms(f.back.quantile(1))}
	if f.firstErr != nil {
		r.FirstError = f.firstErr.Error()
	}
	return r
}

// flapAll runs n flaps of p, one after the other.
func flapAll(ctx context.Context, p *participant, m *mediaRun, n int, fr *flapResult) {
	for range n {
		if ctx.Err() != nil {
			return
		}
		if err := p.flap(ctx, m); err != nil {
			fr.fail(err)
			return
		}
		fr.done.Add(1)
		fr.back.add(time.Duration(p.arrivals[0][kindVideo].last.Load()) - time.Duration(p.flapAt.Load()))
	}
}

// flap resets p's signaling and restarts its ICE, and waits until it has
// resumed, both its connections are up and video arrives again.
func (p *participant) flap(ctx context.Context, m *mediaRun) error {
	ctx, cancel := context.WithTimeout(ctx, flapTimeout)
	defer cancel()
	c := p.current()
	resumes := c.Resumes()
	p.flapAt.Store(m.clk.now())
	if err := p.sig.Reset(); err != nil {
		return err
	}
	if err := poll(ctx, func() bool { return c.Resumes() > resumes }); err != nil {
		return fmt.Errorf("flap %s: no resume: %w (%v)", p.identity, err, c.Err())
	}
	for _, target := range []string{signal.TargetPublisher, signal.TargetSubscriber} {
		if err := c.RestartICE(target); err != nil {
			return fmt.Errorf("flap %s: restart %s: %w", p.identity, target, err)
		}
	}
	up := func(pc *webrtc.PeerConnection) bool {
		st := pc.ICEConnectionState()
		return st == webrtc.ICEConnectionStateConnected || st == webrtc.ICEConnectionStateCompleted
	}
	media := func() bool { return p.arrivals[0][kindVideo].last.Load() > p.flapAt.Load() }
	if err := poll(ctx, func() bool { return up(c.Publisher()) && up(c.Subscriber()) && media() }); err != nil {
		return fmt.Errorf("flap %s: media not back (ice publisher %s, subscriber %s, signaling %s/%s): %w", p.identity,
			c.Publisher().ICEConnectionState(), c.Subscriber().ICEConnectionState(),
			c.Publisher().SignalingState(), c.Subscriber().SignalingState(), err)
	}
	return nil
}

// poll checks cond every 20 ms until it holds or ctx ends.
func poll(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
