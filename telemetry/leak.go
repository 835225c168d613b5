package telemetry

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// LeakDetector samples the goroutine count and flags a suspected leak.
//
// The original rule: sample every 10 s, take the 30th sample as the
// baseline, suspect a leak when the count exceeds 3 times the baseline.
// That rule alarms on an instance that was idle at its baseline and then got
// busy, so what is compared here is the count beyond what the current
// load explains:
//
//	unexplained = count - sessions*LeakSessionBudget - tracks*LeakTrackBudget (never below 0)
//
// Tracks count because a session's goroutines grow with its room: each
// publication and each subscription runs read loops of its own.
//
// The baseline is fixed at the LeakBaselineSample-th sample as the highest
// unexplained count of the samples so far, and never below LeakMinBaseline
// (an instance busy at its baseline sample would otherwise get a baseline
// its first idle moment exceeds). A leak is suspected while the unexplained
// count exceeds LeakFactor times the baseline; exactly at it is not a leak.
//
// It exports media_goroutine_count (now), media_goroutine_count_max (the
// highest seen since start, sampled or scraped), media_potential_goroutine_leak
// (1 or 0), and, so an on-call engineer can see why the flag is set,
// media_goroutine_leak_baseline and media_goroutine_unexplained.
type LeakDetector struct {
	cfg   Config
	load  func() Load // the instance's load now; owned by the caller
	count func() int  // goroutines now: runtime.NumGoroutine outside tests

	mu    sync.Mutex // guards state; sample and the meter callback both use it
	state leakState
}

// Load is the work that explains goroutines at one sample.
type Load struct {
	// Sessions is the number of sessions (participants) connected now.
	Sessions int
	// Tracks is the number of forwarded tracks now: publications plus
	// subscriptions. 0 when the caller cannot tell; the session budget then
	// has to cover them.
	Tracks int
}

// explained is how many goroutines the load accounts for.
func (l Load) explained(cfg Config) int {
	return l.Sessions*cfg.LeakSessionBudget + l.Tracks*cfg.LeakTrackBudget
}

// leakState is the detector's arithmetic, kept apart from clocks and the
// runtime so it can be fed synthetic samples.
type leakState struct {
	cfg         Config
	samples     int // samples observed so far
	warmupMax   int // highest unexplained count before the baseline is fixed
	baseline    int // 0 until the baseline sample
	max         int // highest goroutine count seen
	unexplained int // of the last sample
	leak        bool
}

// observe records one sample and reports whether a leak is suspected.
func (s *leakState) observe(count int, load Load) bool {
	s.samples++
	s.seen(count)
	s.unexplained = max(count-load.explained(s.cfg), 0)
	switch {
	case s.samples < s.cfg.LeakBaselineSample:
		s.warmupMax = max(s.warmupMax, s.unexplained)
	case s.samples == s.cfg.LeakBaselineSample:
		s.baseline = max(s.warmupMax, s.unexplained, s.cfg.LeakMinBaseline)
	default:
		s.leak = float64(s.unexplained) > s.cfg.LeakFactor*float64(s.baseline)
	}
	return s.leak
}

// seen raises the maximum; a scrape between two samples counts too.
func (s *leakState) seen(count int) { s.max = max(s.max, count) }

// NewLeakDetector registers the goroutine gauges on meter. load reports the
// instance's load at each sample; it must be safe to call from any goroutine.
func NewLeakDetector(cfg Config, meter metric.Meter, load func() Load) (*LeakDetector, error) {
	if err := cfg.validateLeak(); err != nil {
		return nil, err
	}
	d := &LeakDetector{cfg: cfg, load: load, count: runtime.NumGoroutine, state: leakState{cfg: cfg}}
	if err := d.register(meter); err != nil {
		return nil, err
	}
	return d, nil
}

// gauge describes one of the detector's instruments.
type gauge struct {
	name, desc string
	value      func(s *leakState, now int) int
}

var leakGauges = []gauge{
	{"media_goroutine_count", "Goroutines now.",
		func(_ *leakState, now int) int { return now }},
	{"media_goroutine_count_max", "Highest goroutine count seen since start.",
		func(s *leakState, _ int) int { return s.max }},
	{"media_potential_goroutine_leak", "1 while a goroutine leak is suspected (unexplained goroutines above factor times baseline), else 0.",
		func(s *leakState, _ int) int { return boolInt(s.leak) }},
	{"media_goroutine_leak_baseline", "Unexplained goroutines at the leak detector's baseline sample; 0 until then.",
		func(s *leakState, _ int) int { return s.baseline }},
	{"media_goroutine_unexplained", "Goroutines at the last sample beyond what the load explains (count minus the session and track budgets).",
		func(s *leakState, _ int) int { return s.unexplained }},
}

// register creates the gauges and the one callback that observes them all
// under the lock, so a scrape sees a consistent set.
func (d *LeakDetector) register(meter metric.Meter) error {
	insts := make([]metric.Int64ObservableGauge, len(leakGauges))
	obs := make([]metric.Observable, len(leakGauges))
	for i, g := range leakGauges {
		var err error
		insts[i], err = meter.Int64ObservableGauge(g.name, metric.WithDescription(g.desc))
		if err != nil {
			return fmt.Errorf("telemetry: create gauge %s: %w", g.name, err)
		}
		obs[i] = insts[i]
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := d.count()
		d.mu.Lock()
		defer d.mu.Unlock()
		d.state.seen(now)
		for i, g := range leakGauges {
			o.ObserveInt64(insts[i], int64(g.value(&d.state, now)))
		}
		return nil
	}, obs...)
	if err != nil {
		return fmt.Errorf("telemetry: register goroutine callback: %w", err)
	}
	return nil
}

// Run samples at once and then every LeakSampleInterval until ctx is done.
// It starts no goroutine and returns nil when ctx ends.
func (d *LeakDetector) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.LeakSampleInterval)
	defer t.Stop()
	d.sample()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.sample()
		}
	}
}

// Suspected reports whether the last sample flagged a leak.
func (d *LeakDetector) Suspected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state.leak
}

func (d *LeakDetector) sample() {
	n, l := d.count(), d.load()
	d.mu.Lock()
	d.state.observe(n, l)
	d.mu.Unlock()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
