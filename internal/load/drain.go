package load

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// drainReport is what a drain in the window did (-drain-after): which
// instance got SIGTERM, how many of its participants moved, whether every
// room ended on one instance, and the media gap the movers saw.
type drainReport struct {
	Instances    int     `json:"instances"`
	Drained      string  `json:"drained"`       // the signalled instance's HTTP base URL
	AfterSeconds float64 `json:"after_seconds"` // into the window
	Participants int     `json:"participants"`  // on it when it was signalled
	Moved        int     `json:"moved"`
	MoveFailed   int     `json:"move_failed"`
	Rooms        int     `json:"rooms"`
	RoomsWhole   int     `json:"rooms_on_one_instance"`
	// EndedAt counts the joined participants at each instance (its HTTP
	// base URL) once the movers have moved.
	EndedAt map[string]int `json:"ended_at"`
	// AudioGap and VideoGap are over the moved receivers: for each, the
	// time from the last packet of the kind its old session received to
	// the first its new session did (0 when they overlapped).
	AudioGap gapReport      `json:"audio_gap"`
	VideoGap gapReport      `json:"video_gap"`
	Gaps     []receiverGaps `json:"gaps,omitempty"`
}

// gapReport sums up one kind's move gaps.
type gapReport struct {
	Receivers int     `json:"receivers"`
	P50       float64 `json:"p50_ms"`
	Max       float64 `json:"max_ms"`
}

// receiverGaps is one moved receiver's gaps; a kind it received on only
// one side of the move is absent (a mover that receives nothing, like a
// fanout's publisher, has no entry).
type receiverGaps struct {
	Identity string   `json:"identity"`
	Audio    *float64 `json:"audio_ms,omitempty"`
	Video    *float64 `json:"video_ms,omitempty"`
}

// drainer sends SIGTERM to the instance holding the most participants
// partway through the window, and afterwards checks where they went.
type drainer struct {
	t      *serverTarget
	rooms  []*room
	cancel context.CancelFunc
	done   chan struct{} // closed when the signal has been sent, or not

	// Written by the drainer's goroutine before done is closed.
	drained *spawned
	movers  []*participant // on the drained instance when it was signalled
	err     error
}

// startDrain arms the drain: after warmup+after, on its own goroutine.
// stop must be called.
func startDrain(ctx context.Context, t *serverTarget, rooms []*room, warmup, after time.Duration, pr *progress) *drainer {
	ctx, cancel := context.WithCancel(ctx)
	d := &drainer{t: t, rooms: rooms, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		if waitFor(ctx, warmup+after) != nil {
			d.err = fmt.Errorf("drain: the run ended before %s into the window", after)
			return
		}
		d.signal(pr)
	}()
	return d
}

// signal picks the instance that holds the most participants and sends it
// SIGTERM.
func (d *drainer) signal(pr *progress) {
	by := map[string][]*participant{}
	for _, r := range d.rooms {
		for _, p := range r.members {
			if c := p.current(); c != nil {
				if u, err := url.Parse(c.URL()); err == nil {
					by[u.Host] = append(by[u.Host], p)
				}
			}
		}
	}
	host := ""
	for h, ps := range by {
		if host == "" || len(ps) > len(by[host]) {
			host = h
		}
	}
	if d.drained = d.t.fleet.byHost(host); d.drained == nil {
		d.err = fmt.Errorf("drain: no spawned instance holds the participants (at %q)", host)
		return
	}
	d.movers = by[host]
	d.t.drain(d.drained.opsURL)
	pr.printf("drain: SIGTERM to %s, holding %d participants", d.drained.httpURL, len(d.movers))
	if err := d.drained.terminate(); err != nil {
		d.err = fmt.Errorf("drain: signal %s: %w", d.drained.httpURL, err)
	}
}

// stop ends the drainer's goroutine if it is still waiting.
func (d *drainer) stop() {
	d.cancel()
	<-d.done
}

// finish waits for the movers to have moved (or failed to) and reports
// the drain; what went wrong fails the run.
func (d *drainer) finish(ctx context.Context, after time.Duration, rep *Report) {
	<-d.done
	if d.err != nil {
		rep.fail("%v", d.err)
		return
	}
	d.awaitMoves(ctx)
	dr := &drainReport{Instances: len(d.t.fleet.nodes), Drained: d.drained.httpURL, AfterSeconds: after.Seconds(), Participants: len(d.movers)}
	var audio, video durations
	for _, p := range d.movers {
		n, err := p.moved()
		switch {
		case err != nil:
			dr.MoveFailed++
			rep.fail("drain: %v", err)
		case n > 0:
			dr.Moved++
			if g := p.gaps(&audio, &video); g.Audio != nil || g.Video != nil {
				dr.Gaps = append(dr.Gaps, g)
			}
		}
	}
	dr.AudioGap, dr.VideoGap = audio.gaps(), video.gaps()
	dr.Rooms, dr.RoomsWhole, dr.EndedAt = d.whereNow()
	if dr.Moved != dr.Participants {
		rep.fail("drain: %d of the drained instance's %d participants moved", dr.Moved, dr.Participants)
	}
	if dr.RoomsWhole != dr.Rooms {
		rep.fail("drain: %d of %d rooms ended split over several instances", dr.Rooms-dr.RoomsWhole, dr.Rooms)
	}
	rep.Drain = dr
}

// awaitMoves polls until every mover has moved or failed, for at most a
// move's timeout.
func (d *drainer) awaitMoves(ctx context.Context) {
	deadline := time.Now().Add(moveTimeout)
	for time.Now().Before(deadline) {
		pending := 0
		for _, p := range d.movers {
			if n, err := p.moved(); n == 0 && err == nil {
				pending++
			}
		}
		if pending == 0 || waitFor(ctx, 50*time.Millisecond) != nil {
			return
		}
	}
}

// whereNow counts the rooms whose joined participants are all at one
// instance now, and the participants at each instance.
func (d *drainer) whereNow() (rooms, whole int, endedAt map[string]int) {
	endedAt = map[string]int{}
	for _, r := range d.rooms {
		at := map[string]bool{}
		for _, p := range r.members {
			if c := p.current(); c != nil {
				at[c.URL()] = true
				endedAt[d.instance(c.URL())]++
			}
		}
		rooms++
		if len(at) == 1 {
			whole++
		}
	}
	return rooms, whole, endedAt
}

// instance is the HTTP base URL of the spawned instance whose signaling
// URL is rtcURL, or rtcURL itself.
func (d *drainer) instance(rtcURL string) string {
	if u, err := url.Parse(rtcURL); err == nil {
		if s := d.t.fleet.byHost(u.Host); s != nil {
			return s.httpURL
		}
	}
	return rtcURL
}

// gaps adds p's move gaps to audio and video and returns them.
func (p *participant) gaps(audio, video *durations) receiverGaps {
	g := receiverGaps{Identity: p.identity}
	if d, ok := p.moveGap(kindAudio); ok {
		audio.add(d)
		g.Audio = new(ms(d))
	}
	if d, ok := p.moveGap(kindVideo); ok {
		video.add(d)
		g.Video = new(ms(d))
	}
	return g
}

// gaps sums up a kind's move gaps.
func (d *durations) gaps() gapReport {
	return gapReport{Receivers: d.count(), P50: ms(d.quantile(0.5)), Max: ms(d.quantile(1))}
}
