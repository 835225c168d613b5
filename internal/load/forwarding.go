package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// runForwarding is the fanout and meeting scenarios: the floor first (with
// the server idle), then the same shape against the server.
func runForwarding(ctx context.Context, cfg Config, rep *Report, pr *progress) error {
	if cfg.Floor {
		if err := measureFloor(ctx, cfg, rep, pr); err != nil {
			return err
		}
	}
	t, err := openTarget(ctx, cfg, cfg.shape().participants(), pr)
	if err != nil {
		return err
	}
	defer t.close()
	err = measureServer(ctx, cfg, t, rep, pr)
	t.finish(rep)
	if err != nil {
		return err
	}
	if rep.Server != nil && rep.Floor != nil && rep.Floor.CPUMicrosPerPkt > 0 && rep.Server.CPUMicrosPerPkt > 0 {
		rep.CostRatio = rep.Server.CPUMicrosPerPkt / rep.Floor.CPUMicrosPerPkt
	}
	return nil
}

// room is one room of the run: its participants, the first of which is a
// publisher that joins before the others, so every later join has media
// to wait for.
type room struct {
	name    string
	members []*participant
}

// plan creates the rooms and participants of topology t; nothing joins yet.
func plan(t topology, m *mediaRun) []*room {
	run := runID()
	rooms := make([]*room, len(t))
	for i, g := range t {
		r := &room{name: fmt.Sprintf("load-%s-%d", run, i)}
		for j := range g.publishers + g.listeners {
			r.members = append(r.members, &participant{
				room: r.name, identity: fmt.Sprintf("p%d-%d", i, j),
				publish: j < g.publishers, sink: m.addSink(),
			})
		}
		rooms[i] = r
	}
	return rooms
}

// runID keeps the rooms of two runs against one instance apart.
func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// measureServer joins every participant, measures the window, and leaves.
func measureServer(ctx context.Context, cfg Config, t *serverTarget, rep *Report, pr *progress) error {
	m := newMediaRun(newClock(), cfg.Media)
	defer m.stopSenders()
	base, haveMetrics, err := t.sample(ctx)
	if err != nil {
		return fmt.Errorf("server metrics before the run (pass -ops-url '' to skip them): %w", err)
	}
	rooms := plan(cfg.shape(), m)
	defer leaveAll(rooms, cfg.JoinConcurrency)
	jr := joinAll(ctx, cfg, t, m, rooms, pr)
	rep.Joins = jr.report()
	if jr.failed.Load() > 0 {
		rep.fail("joins: %d of %d failed (first: %s)", jr.failed.Load(), jr.attempted, rep.Joins.FirstErrorText)
	}
	if jr.joined.Load() == 0 {
		return nil
	}
	expectRooms(rooms)

	pr.printf("server: %d participants joined; warming up %s, measuring %s", jr.joined.Load(), cfg.Timing.Warmup, cfg.Timing.Window)
	var s0, s1 serverSample
	res := &phaseResult{cpuKnown: haveMetrics}
	res.window, err = m.measure(ctx, cfg.Timing, windowHooks{
		open: func() (err error) {
			pr.reset(m)
			s0, _, err = t.sample(ctx)
			return err
		},
		close:    func() (err error) { s1, _, err = t.sample(ctx); return err },
		progress: func(el time.Duration) { pr.media("server", el, m) },
	})
	if err != nil {
		return fmt.Errorf("server window: %w", err)
	}
	res.media, res.sendErrors, res.skipped = m.totals(), m.sendErrors(), m.skipped()
	res.cpu = time.Duration((s1.CPUSeconds - s0.CPUSeconds) * float64(time.Second))
	rep.Server = newPhaseReport(res)
	checkLoss(rep, "server", rep.Server, cfg.MaxLoss)
	if haveMetrics {
		rep.Resources = newResources(base, s0, int(jr.joined.Load()))
	}
	return nil
}

func newResources(base, loaded serverSample, n int) *resourceReport {
	r := &resourceReport{Baseline: base, Loaded: loaded, Participants: n}
	if n > 0 {
		r.RSSPerParticipantMiB = (loaded.RSS - base.RSS) / float64(n) / mib
		r.GoroutinesPerParticip = (loaded.Goroutines - base.Goroutines) / float64(n)
	}
	return r
}

// joinResult gathers the joins of a run.
type joinResult struct {
	attempted  int
	joined     atomic.Int64
	failed     atomic.Int64
	firstMedia durations // WebSocket dial to first packet of any kind
	firstVideo durations // WebSocket dial to first video packet
	errMu      sync.Mutex
	firstErr   error
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
		jr.firstMedia.add(time.Duration(p.sink.firstAt(kindCount) - p.dialAt))
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

// expectRooms makes every joined participant expect every source of the
// other joined publishers of its room.
func expectRooms(rooms []*room) {
	for _, r := range rooms {
		for _, p := range r.members {
			if p.c == nil {
				continue
			}
			for _, q := range r.members {
				if q == p || q.c == nil {
					continue
				}
				for _, s := range q.senders {
					p.sink.expect(s.src)
				}
			}
		}
	}
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
