package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Leak thresholds of the churn scenario: after every churner has left and
// the server has had -settle to clean up, it must be back within these of
// where it was before the churn began.
const (
	churnGoroutineSlack = 10
	churnFDSlack        = 5
)

// runChurn keeps one publisher (the anchor) in a room while -parallel
// participants at a time join, publish, wait for their first media, stay
// for -hold and leave, -cycles times in all. It compares the server's
// goroutines, open files and heap before and after: a session that leaves
// anything behind shows up there.
func runChurn(ctx context.Context, cfg Config, rep *Report, pr *progress) error {
	t, err := openTarget(ctx, cfg, cfg.Parallel+1, pr)
	if err != nil {
		return err
	}
	defer t.close()
	m := newMediaRun(newClock(), cfg.Media)
	defer m.stopSenders()
	roomName := "load-" + runID() + "-churn"
	anchor := &participant{room: roomName, identity: "anchor", publish: true, sink: m.addSink()}
	if err := anchor.join(ctx, t, m); err != nil {
		return fmt.Errorf("churn: anchor: %w", err)
	}
	defer leaveOne(anchor)
	if err := prime(ctx, cfg, t, m, roomName); err != nil {
		return err
	}
	before, have, err := t.sampleLive(ctx)
	if err != nil {
		return fmt.Errorf("churn: server metrics (pass -ops-url '', or leave out -ops-urls, to skip them): %w", err)
	}
	c := &churnReport{Cycles: cfg.Cycles, Before: before}
	jr := &joinResult{attempted: cfg.Cycles}
	fr := &flapResult{}
	start := time.Now()
	churnAll(ctx, cfg, t, m, roomName, jr, fr, pr)
	c.Seconds = time.Since(start).Seconds()
	rep.Joins = jr.report()
	t.finish(rep)
	checkAnchor(rep, anchor)
	c.Completed, c.Failed = int(jr.joined.Load()), int(jr.failed.Load())
	if c.Failed > 0 {
		rep.fail("churn: %d of %d joins failed (first: %s)", c.Failed, c.Cycles, rep.Joins.FirstErrorText)
	}
	if cfg.Flaps > 0 {
		c.Flaps = fr.report()
		if c.Flaps.Failed > 0 {
			rep.fail("churn: %d network flaps failed (first: %s)", c.Flaps.Failed, c.Flaps.FirstError)
		}
	}
	if have {
		c.After, c.SettledSeconds = settle(ctx, t, before, cfg.Settle)
		checkLeaks(rep, c)
	}
	rep.Churn = c
	return nil
}

// checkAnchor fails the run when the anchor's session ended during the
// churn: the server's before and after would then differ by its session.
func checkAnchor(rep *Report, anchor *participant) {
	select {
	case <-anchor.c.Done():
		rep.fail("churn: the anchor's session ended during the churn (leave reason %q, %v); the before/after comparison is void", anchor.c.LeaveReason(), anchor.c.Err())
	default:
	}
}

// prime runs one cycle before the baseline is taken. The anchor's
// subscriber connection is only negotiated (and its ICE, DTLS and SRTP
// goroutines only started) once there is a track to send it; that happens
// with the first joiner and lasts as long as the anchor, so it belongs in
// the baseline, not in what churn leaves behind.
func prime(ctx context.Context, cfg Config, t *serverTarget, m *mediaRun, roomName string) error {
	jr := &joinResult{}
	p := &participant{room: roomName, identity: "primer", publish: true, sink: newSink(m.clk, m.sources, &m.total)}
	churnOnce(ctx, cfg, t, m, p, jr, &flapResult{})
	if jr.failed.Load() > 0 {
		return fmt.Errorf("churn: first join: %w", jr.firstErr)
	}
	if err := waitFor(ctx, time.Second); err != nil { // the leave's teardown, before the baseline
		return err
	}
	return nil
}

// churnAll runs the cycles on -parallel workers.
func churnAll(ctx context.Context, cfg Config, t *serverTarget, m *mediaRun, roomName string, jr *joinResult, fr *flapResult, pr *progress) {
	var next atomic.Int64
	stop := pr.every(time.Second, func() string {
		return fmt.Sprintf("churn   %d/%d cycles, %d failed, join p50 %.0f ms", jr.joined.Load(), cfg.Cycles, jr.failed.Load(), ms(jr.firstMedia.quantile(0.5)))
	})
	defer stop()
	var wg sync.WaitGroup
	for range cfg.Parallel {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(cfg.Cycles) && ctx.Err() == nil; i = next.Add(1) {
				p := &participant{room: roomName, identity: fmt.Sprintf("c%d", i), publish: true,
					sink: newSink(m.clk, m.sources, &m.total)}
				churnOnce(ctx, cfg, t, m, p, jr, fr)
			}
		})
	}
	wg.Wait()
}

// churnOnce is one cycle: join and wait for media, -flaps network flaps,
// hold, leave.
func churnOnce(ctx context.Context, cfg Config, t *serverTarget, m *mediaRun, p *participant, jr *joinResult, fr *flapResult) {
	defer leaveOne(p)
	if timedJoin(ctx, cfg, t, m, p, jr) {
		flapAll(ctx, p, m, cfg.Flaps, fr)
		_ = waitFor(ctx, cfg.Hold)
		recordFirstVideo([]*participant{p}, jr)
	}
}

func leaveOne(p *participant) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.leave(ctx)
}

// settle scrapes (each time after a collection) until the server's goroutines are back to before (within
// the slack) or the wait is over, and returns the last sample and how long
// it took.
func settle(ctx context.Context, t *serverTarget, before serverSample, wait time.Duration) (serverSample, float64) {
	start := time.Now()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		s, _, err := t.sampleLive(ctx)
		if err == nil && s.Goroutines <= before.Goroutines+churnGoroutineSlack {
			return s, time.Since(start).Seconds()
		}
		select {
		case <-ctx.Done():
			return s, time.Since(start).Seconds()
		case <-deadline.C:
			return s, time.Since(start).Seconds()
		case <-tick.C:
		}
	}
}

// checkLeaks fails the run when the server kept goroutines or files.
func checkLeaks(rep *Report, c *churnReport) {
	if c.After.Goroutines > c.Before.Goroutines+churnGoroutineSlack {
		rep.fail("churn: goroutines %.0f after, %.0f before (more than %d kept)", c.After.Goroutines, c.Before.Goroutines, churnGoroutineSlack)
	}
	if c.After.FDs > c.Before.FDs+churnFDSlack {
		rep.fail("churn: open fds %.0f after, %.0f before (more than %d kept)", c.After.FDs, c.Before.FDs, churnFDSlack)
	}
}
