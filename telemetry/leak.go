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
// busy, so what is compared here is the count beyond what the active
// sessions explain: unexplained = count - sessions*LeakSessionBudget. The
// baseline is the unexplained count at the baseline sample, and a leak is
// suspected while the unexplained count exceeds LeakFactor times it.
//
// It exports media_goroutine_count, media_goroutine_count_max and
// media_potential_goroutine_leak.
type LeakDetector struct {
	cfg      Config
	sessions func() int // active sessions now; owned by the caller

	mu    sync.Mutex // guards state
	state leakState
}

// leakState is the detector's arithmetic, kept apart from clocks and
// runtime so it can be fed synthetic samples.
type leakState struct {
	cfg      Config
	samples  int
	baseline int // unexplained goroutines at the baseline sample; 0 until then
	max      int
	last     int
	leak     bool
}

// observe records one sample and reports whether a leak is suspected.
func (s *leakState) observe(count, sessions int) bool {
	s.samples++
	s.last = count
	s.max = max(s.max, count)
	unexplained := max(count-sessions*s.cfg.LeakSessionBudget, 1)
	switch {
	case s.samples < s.cfg.LeakBaselineSample:
		s.leak = false
	case s.samples == s.cfg.LeakBaselineSample:
		s.baseline = unexplained
		s.leak = false
	default:
		s.leak = float64(unexplained) > s.cfg.LeakFactor*float64(s.baseline)
	}
	return s.leak
}

// NewLeakDetector registers the three goroutine gauges on meter. sessions
// reports the number of active sessions; it must be safe to call from any
// goroutine.
func NewLeakDetector(cfg Config, meter metric.Meter, sessions func() int) (*LeakDetector, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &LeakDetector{cfg: cfg, sessions: sessions, state: leakState{cfg: cfg}}
	count, err := meter.Int64ObservableGauge("media_goroutine_count",
		metric.WithDescription("Goroutines now."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: goroutine gauge: %w", err)
	}
	maxG, err := meter.Int64ObservableGauge("media_goroutine_count_max",
		metric.WithDescription("Highest goroutine count seen since start."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: goroutine max gauge: %w", err)
	}
	leak, err := meter.Int64ObservableGauge("media_potential_goroutine_leak",
		metric.WithDescription("1 while a goroutine leak is suspected, else 0."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: goroutine leak gauge: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := runtime.NumGoroutine()
		d.mu.Lock()
		defer d.mu.Unlock()
		o.ObserveInt64(count, int64(now))
		o.ObserveInt64(maxG, int64(max(d.state.max, now)))
		o.ObserveInt64(leak, boolInt(d.state.leak))
		return nil
	}, count, maxG, leak)
	if err != nil {
		return nil, fmt.Errorf("telemetry: register goroutine callback: %w", err)
	}
	return d, nil
}

// Run samples until ctx is done. It returns nil when ctx ends.
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

func (d *LeakDetector) sample() {
	n, s := runtime.NumGoroutine(), d.sessions()
	d.mu.Lock()
	d.state.observe(n, s)
	d.mu.Unlock()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
