package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// group is one room's shape: publishers send audio and video and receive
// every other publisher; listeners only receive.
type group struct {
	publishers int
	listeners  int
}

// topology is the shape of a scenario, shared by the floor and the real
// server so both forward the same packets to the same number of receivers.
type topology []group

func (t topology) participants() int {
	n := 0
	for _, g := range t {
		n += g.publishers + g.listeners
	}
	return n
}

// mediaRun holds the media side of one phase: its sources and senders, the
// sinks of its receivers, and the count of received packets for progress.
type mediaRun struct {
	clk     clock
	cfg     MediaConfig
	sources *sourceSet
	total   atomic.Uint64 // stamped packets received by every sink

	stop     chan struct{} // closed by stopSenders: every sender ends
	stopOnce sync.Once
	wg       sync.WaitGroup // running senders

	mu      sync.Mutex // guards sinks and senders
	sinks   []*sink
	senders []*sender
}

func newMediaRun(clk clock, cfg MediaConfig) *mediaRun {
	return &mediaRun{clk: clk, cfg: cfg, sources: newSourceSet(), stop: make(chan struct{})}
}

// addSink creates the accounting of one receiving participant.
func (m *mediaRun) addSink() *sink {
	k := newSink(m.clk, m.sources, &m.total)
	m.mu.Lock()
	m.sinks = append(m.sinks, k)
	m.mu.Unlock()
	return k
}

// newSender creates a source of kind and a sender writing it to w; start
// runs it.
func (m *mediaRun) newSender(kind mediaKind, w packetWriter) *sender {
	s := newSender(m.sources.add(kind), m.cfg, m.clk, w)
	m.mu.Lock()
	m.senders = append(m.senders, s)
	m.mu.Unlock()
	return s
}

// start runs s until stopSenders ends it.
func (m *mediaRun) start(s *sender) { m.startUntil(s, nil) }

// startUntil runs s until leave is closed or stopSenders ends it: a
// participant that leaves stops its own senders. A nil leave never closes.
func (m *mediaRun) startUntil(s *sender, leave <-chan struct{}) {
	m.wg.Go(func() { s.run(m.stop, leave) })
}

// stopSenders stops every sender and waits for them. It may be called
// more than once. A run that is interrupted stops its senders here too:
// measure, and every scenario, defer it.
func (m *mediaRun) stopSenders() {
	m.stopOnce.Do(func() { close(m.stop) })
	m.wg.Wait()
}

func (m *mediaRun) eachSender(f func(*sender)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.senders {
		f(s)
	}
}

func (m *mediaRun) openWindows()  { m.eachSender(func(s *sender) { s.src.openWindow() }) }
func (m *mediaRun) closeWindows() { m.eachSender(func(s *sender) { s.src.closeWindow() }) }

// sendErrors is how many packet writes failed.
func (m *mediaRun) sendErrors() uint64 {
	var n uint64
	m.eachSender(func(s *sender) { n += s.errors.Load() })
	return n
}

// skipped is how many packets senders skipped because they fell behind.
func (m *mediaRun) skipped() uint64 {
	var n uint64
	m.eachSender(func(s *sender) { n += s.skipped.Load() })
	return n
}

// waitDelivered waits until every sink has its whole window, or grace has
// passed: what is still missing then is loss.
func (m *mediaRun) waitDelivered(ctx context.Context, grace time.Duration) {
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !m.allComplete() {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

func (m *mediaRun) allComplete() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.sinks {
		if !k.complete() {
			return false
		}
	}
	return true
}

// totals sums every sink.
func (m *mediaRun) totals() mediaTotals {
	var t mediaTotals
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.sinks {
		t.add(k)
	}
	return t
}

// phaseResult is what one measured phase (the floor, or the server)
// produced inside its window.
type phaseResult struct {
	window     time.Duration
	media      mediaTotals
	cpu        time.Duration // the forwarding process's CPU time in the window
	cpuKnown   bool
	sendErrors uint64
	skipped    uint64 // packets the load generator could not send in time
}

// cpuPerPacket is the forwarder's CPU per delivered packet.
func (r *phaseResult) cpuPerPacket() time.Duration {
	if !r.cpuKnown || r.media.got == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.media.got)
}

// windowHooks are what a phase measures at the edges of its window.
type windowHooks struct {
	open     func() error                // before the window opens (CPU reading)
	close    func() error                // right after the senders stop
	progress func(elapsed time.Duration) // once a second inside the window
}

// Timing is how long a phase warms up, measures, and waits for stragglers.
type Timing struct {
	Warmup time.Duration // media time after every join before the window opens
	Window time.Duration // the measured window
	Grace  time.Duration // wait for in-flight packets after the window; what is missing then is loss
}

// measure runs the already started senders through warm-up and the
// measured window, stops them and waits for the last packets. It returns
// the window's length.
func (m *mediaRun) measure(ctx context.Context, tm Timing, h windowHooks) (time.Duration, error) {
	defer m.stopSenders()
	if err := waitFor(ctx, tm.Warmup); err != nil {
		return 0, err
	}
	if err := h.open(); err != nil {
		return 0, err
	}
	m.openWindows()
	t0 := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.NewTimer(tm.Window)
	defer end.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
			h.progress(time.Since(t0))
		case <-end.C:
			done = true
		}
	}
	m.stopSenders()
	elapsed := time.Since(t0)
	m.closeWindows()
	if err := h.close(); err != nil {
		return 0, err
	}
	m.waitDelivered(ctx, tm.Grace)
	return elapsed, nil
}

// waitFor waits d or until ctx is done.
func waitFor(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
