package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// joinResult gathers the joins of a run.
type joinResult struct {
	attempted  int
	joined     atomic.Int64
	failed     atomic.Int64
	firstMedia durations // WebSocket dial to first packet of any kind
	firstVideo durations // WebSocket dial to first video packet
	// firstMedia split by whether the join followed a redirect to the
	// room's instance: the difference is what a redirect costs.
	direct, redirected durations
	errMu              sync.Mutex
	firstErr           error
}

func (j *joinResult) fail(err error) {
	j.failed.Add(1)
	j.errMu.Lock()
	if j.firstErr == nil {
		j.firstErr = err
	}
	j.errMu.Unlock()
}

func (j *joinResult) report() *joinReport {
	r := &joinReport{
		Attempted: j.attempted, Joined: int(j.joined.Load()), Failed: int(j.failed.Load()),
		FirstMediaP50: ms(j.firstMedia.quantile(0.5)), FirstMediaP95: ms(j.firstMedia.quantile(0.95)),
		FirstMediaMax: ms(j.firstMedia.quantile(1)),
		FirstVideoP50: ms(j.firstVideo.quantile(0.5)), FirstVideoP95: ms(j.firstVideo.quantile(0.95)),
		Direct: j.direct.split(), ViaRedirect: j.redirected.split(),
	}
	if j.firstErr != nil {
		r.FirstErrorText = j.firstErr.Error()
	}
	return r
}

// joinAll joins the first publisher of every room, then everyone else,
// -join-concurrency at a time. The later joins are timed from the
// WebSocket dial to the first media packet received.
func joinAll(ctx context.Context, cfg Config, t *serverTarget, m *mediaRun, rooms []*room, pr *progress) *joinResult {
	jr := &joinResult{}
	var firsts, rest []*participant
	for _, r := range rooms {
		firsts = append(firsts, r.members[0])
		rest = append(rest, r.members[1:]...)
	}
	jr.attempted = len(firsts) + len(rest)
	stop := pr.every(time.Second, func() string {
		return fmt.Sprintf("joining %d/%d joined, %d failed", jr.joined.Load(), jr.attempted, jr.failed.Load())
	})
	defer stop()
	joinEach(ctx, cfg, firsts, func(p *participant) {
		if err := p.join(ctx, t, m); err != nil {
			jr.fail(err)
			return
		}
		jr.joined.Add(1)
	})
	joinEach(ctx, cfg, rest, func(p *participant) { timedJoin(ctx, cfg, t, m, p, jr) })
	recordFirstVideo(rest, jr)
	return jr
}

// timedJoin joins p and waits for its first media packet; it reports
// whether both happened within -join-timeout.
func timedJoin(ctx context.Context, cfg Config, t *serverTarget, m *mediaRun, p *participant, jr *joinResult) bool {
	jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	if err := p.join(jctx, t, m); err != nil {
		jr.fail(err)
		return false
	}
	select {
	case <-p.sink.arrived:
		jr.joined.Add(1)
		d := time.Duration(p.sink.firstAt(kindCount) - p.dialAt)
		jr.firstMedia.add(d)
		if p.current().Redirects() > 0 {
			jr.redirected.add(d)
		} else {
			jr.direct.add(d)
		}
		return true
	case <-jctx.Done():
		jr.fail(fmt.Errorf("join %s: no media within %s", p.identity, cfg.JoinTimeout))
		return false
	}
}

// recordFirstVideo adds the first-video times of the timed joins (the
// first video packet may come after the join itself was counted).
func recordFirstVideo(ps []*participant, jr *joinResult) {
	for _, p := range ps {
		if at := p.sink.firstAt(kindVideo); at != 0 && p.dialAt != 0 {
			jr.firstVideo.add(time.Duration(at - p.dialAt))
		}
	}
}

// joinEach runs f for every participant, n at a time, and waits.
func joinEach(ctx context.Context, cfg Config, ps []*participant, f func(*participant)) {
	sem := make(chan struct{}, cfg.JoinConcurrency)
	var wg sync.WaitGroup
	for _, p := range ps {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(p)
		})
	}
	wg.Wait()
}

// leaveAll makes every joined participant leave, n at a time, each within
// 5 s.
func leaveAll(rooms []*room, n int) {
	var all []*participant
	for _, r := range rooms {
		all = append(all, r.members...)
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, p := range all {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = p.leave(ctx) // the run is measured; a slow leave shows in the server's own counts

		})
	}
	wg.Wait()
}
