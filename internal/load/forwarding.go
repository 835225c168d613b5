package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
	return finishServer(t, rep, measureServer(ctx, cfg, t, rep, pr))
}

// finishServer completes the report after the server's phase ended with
// err: the target's own numbers, and the server's CPU per packet as a
// multiple of the floor's when both were measured.
func finishServer(t *serverTarget, rep *Report, err error) error {
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
	base, haveMetrics, err := t.baseline(ctx)
	if err != nil {
		return err
	}
	rooms := plan(cfg.shape(), m)
	defer leaveAll(rooms, cfg.JoinConcurrency)
	if rep.Receivers, err = makeLight(cfg, t, rooms); err != nil {
		return err
	}
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
	var d *drainer
	if cfg.DrainAfter > 0 {
		d = startDrain(ctx, t, rooms, cfg.Timing.Warmup, cfg.DrainAfter, pr)
		defer d.stop()
	}
	res, loaded, err := serverWindow(ctx, cfg.Timing, t, m, pr)
	if err != nil {
		return err
	}
	if d != nil {
		d.finish(ctx, cfg.DrainAfter, rep)
	}
	rep.Receivers.countAtSocket(rooms)
	reportServer(rep, cfg.MaxLoss, res, base, loaded, haveMetrics, jr.joined.Load())
	return nil
}

// reportServer puts the server's window into the report: its forwarding,
// checked against maxLoss, and when the instance's metrics were read
// (haveMetrics) its footprint from idle (base) to loaded over the joined
// participants.
func reportServer(rep *Report, maxLoss float64, res *phaseResult, base, loaded serverSample, haveMetrics bool, joined int64) {
	res.cpuKnown = haveMetrics
	rep.Server = newPhaseReport(res)
	checkLoss(rep, "server", rep.Server, maxLoss)
	if haveMetrics {
		rep.Resources = newResources(base, loaded, int(joined))
	}
}

// serverWindow measures the window of the joined participants' media,
// with the server's CPU from samples at its edges. loaded is the sample
// as the window opens, with every participant connected.
func serverWindow(ctx context.Context, tm Timing, t *serverTarget, m *mediaRun, pr *progress) (res *phaseResult, loaded serverSample, err error) {
	var s1 serverSample
	res = &phaseResult{}
	res.window, err = m.measure(ctx, tm, windowHooks{
		open: func() (err error) {
			pr.reset(m)
			loaded, _, err = t.sample(ctx)
			return err
		},
		close:    func() (err error) { s1, _, err = t.sample(ctx); return err },
		progress: func(el time.Duration) { pr.media("server", el, m) },
	})
	if err != nil {
		return nil, loaded, fmt.Errorf("server window: %w", err)
	}
	res.media, res.sendErrors, res.skipped = m.totals(), m.sendErrors(), m.skipped()
	res.cpu = time.Duration((s1.CPUSeconds - loaded.CPUSeconds) * float64(time.Second))
	return res, loaded, nil
}

func newResources(base, loaded serverSample, n int) *resourceReport {
	r := &resourceReport{Baseline: base, Loaded: loaded, Participants: n}
	if n > 0 {
		r.RSSPerParticipantMiB = (loaded.RSS - base.RSS) / float64(n) / mib
		r.GoroutinesPerParticip = (loaded.Goroutines - base.Goroutines) / float64(n)
	}
	return r
}

// expectRooms makes every joined participant expect every source of the
// other joined publishers of its room.
func expectRooms(rooms []*room) {
	for _, r := range rooms {
		for _, p := range r.members {
			if p.current() == nil {
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
