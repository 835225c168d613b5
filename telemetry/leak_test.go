package telemetry

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caarlos0/env/v11"
	"go.opentelemetry.io/otel/metric/noop"
)

// defaultConfig is Config as cmd parses it from an empty environment, so the
// tests run on the documented defaults.
func defaultConfig(t *testing.T, environ map[string]string) Config {
	t.Helper()
	var c Config
	if environ == nil {
		environ = map[string]string{}
	}
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		t.Fatalf("env.Parse(%v) = %v", environ, err)
	}
	return c
}

// phase is a run of identical synthetic samples.
type phase struct {
	samples, count, sessions, tracks int
}

// busyRoom is six participants each publishing audio and video and
// subscribed to everyone else's: 12 publications and 60 subscriptions, with
// the goroutine counts measured per session (50, cmd/media-service
// TestGoroutineBudgetsCoverSessions) and per track (1) on top of an idle
// instance's 50.
const busyRoomCount = 50 + 6*50 + 72*1

func TestLeakStateObserve(t *testing.T) {
	// Defaults: baseline at sample 30, factor 3, 70 goroutines a session
	// and 10 a track, baseline at least 30. The idle instance runs 50 goroutines, so the
	// threshold is 150 unexplained goroutines.
	tests := []struct {
		name          string
		phases        []phase
		wantBaseline  int
		wantFirstLeak int // 1-based sample at which the flag first rose; 0 = never
		wantLeakAtEnd bool
		naiveAlarms   bool // whether the original count > 3*baseline rule would have alarmed
	}{
		{name: "quiet", phases: []phase{{60, 50, 0, 0}}, wantBaseline: 50},
		{
			name:         "busy but healthy: idle at baseline, then 100 sessions",
			phases:       []phase{{30, 50, 0, 0}, {30, 50 + 100*38, 100, 0}},
			wantBaseline: 50, naiveAlarms: true,
		},
		{
			name:         "busy room: six participants with 72 forwarded tracks",
			phases:       []phase{{30, 50, 0, 0}, {30, busyRoomCount, 6, 72}},
			wantBaseline: 50, naiveAlarms: true,
		},
		{
			name:         "busy room without the track count: the session budget explains it",
			phases:       []phase{{30, 50, 0, 0}, {30, busyRoomCount, 6, 0}},
			wantBaseline: 50, naiveAlarms: true,
		},
		{
			name:          "leaking in a busy room: 300 goroutines beyond the room's budget",
			phases:        []phase{{30, 50, 0, 0}, {5, busyRoomCount, 6, 72}, {5, 6*70 + 72*10 + 50 + 300, 6, 72}},
			wantBaseline:  50,
			wantFirstLeak: 36, wantLeakAtEnd: true, naiveAlarms: true,
		},
		{
			name:          "leaking: unexplained growth while idle",
			phases:        []phase{{30, 50, 0, 0}, {5, 100, 0, 0}, {5, 400, 0, 0}},
			wantBaseline:  50,
			wantFirstLeak: 36, wantLeakAtEnd: true, naiveAlarms: true,
		},
		{
			name:          "leaking while busy: 10 sessions plus 300 leaked",
			phases:        []phase{{30, 50, 0, 0}, {5, 50 + 10*70, 10, 0}, {5, 50 + 10*70 + 300, 10, 0}},
			wantBaseline:  50,
			wantFirstLeak: 36, wantLeakAtEnd: true, naiveAlarms: true,
		},
		{
			name:         "boundary: exactly factor times baseline is not a leak",
			phases:       []phase{{30, 50, 0, 0}, {10, 150, 0, 0}},
			wantBaseline: 50,
		},
		{
			name:          "boundary: one above factor times baseline is a leak",
			phases:        []phase{{30, 50, 0, 0}, {10, 151, 0, 0}},
			wantBaseline:  50,
			wantFirstLeak: 31, wantLeakAtEnd: true, naiveAlarms: true,
		},
		{
			name:          "leak ends: the flag clears when goroutines are released",
			phases:        []phase{{30, 50, 0, 0}, {3, 400, 0, 0}, {3, 60, 0, 0}},
			wantBaseline:  50,
			wantFirstLeak: 31, naiveAlarms: true,
		},
		{
			name:         "busy at the baseline sample: the warm-up maximum keeps the baseline honest",
			phases:       []phase{{29, 50, 0, 0}, {1, 50 + 20*39, 20, 0}, {20, 50, 0, 0}},
			wantBaseline: 50,
		},
		{
			name:         "tiny idle instance: the floor keeps a 10-goroutine baseline from alarming at 31",
			phases:       []phase{{30, 10, 0, 0}, {10, 80, 0, 0}},
			wantBaseline: 30, naiveAlarms: true,
		},
		{
			name:          "no baseline yet: nothing is flagged before the baseline sample",
			phases:        []phase{{29, 5000, 0, 0}},
			wantBaseline:  0,
			wantFirstLeak: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := leakState{cfg: defaultConfig(t, nil)}
			firstLeak, naive, naiveBase, n := 0, false, 0, 0
			for _, p := range tt.phases {
				for range p.samples {
					n++
					if s.observe(p.count, Load{Sessions: p.sessions, Tracks: p.tracks}) && firstLeak == 0 {
						firstLeak = n
					}
					if n == 30 {
						naiveBase = p.count
					}
					naive = naive || (n > 30 && p.count > 3*naiveBase)
				}
			}
			if s.baseline != tt.wantBaseline {
				t.Errorf("baseline = %d; want %d", s.baseline, tt.wantBaseline)
			}
			if firstLeak != tt.wantFirstLeak {
				t.Errorf("first leak at sample %d; want %d", firstLeak, tt.wantFirstLeak)
			}
			if s.leak != tt.wantLeakAtEnd {
				t.Errorf("leak after the last sample = %v; want %v", s.leak, tt.wantLeakAtEnd)
			}
			if naive != tt.naiveAlarms {
				t.Errorf("original rule alarmed = %v; want %v (case is mislabelled)", naive, tt.naiveAlarms)
			}
		})
	}
}

func TestLeakStateMax(t *testing.T) {
	s := leakState{cfg: defaultConfig(t, nil)}
	for _, c := range []int{10, 80, 20} {
		s.observe(c, Load{})
	}
	s.seen(120) // a scrape between samples saw a peak
	s.observe(30, Load{})
	if s.max != 120 {
		t.Errorf("max after samples 10, 80, 20, scrape 120, sample 30 = %d; want 120", s.max)
	}
}

// TestLeakDetectorRun checks the loop's timing on a fake clock: the first
// sample at once, one every interval, the baseline at the 30th sample
// (290 s in), and the flag one interval after the count jumps.
func TestLeakDetectorRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := defaultConfig(t, nil)
		var goroutines, sessions atomic.Int64
		goroutines.Store(50)
		d, err := NewLeakDetector(cfg, noop.NewMeterProvider().Meter("test"), func() Load { return Load{Sessions: int(sessions.Load())} })
		if err != nil {
			t.Fatalf("NewLeakDetector: %v", err)
		}
		d.count = func() int { return int(goroutines.Load()) }
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()

		baseline := func() int { d.mu.Lock(); defer d.mu.Unlock(); return d.state.baseline }
		synctest.Wait()
		time.Sleep(28 * cfg.LeakSampleInterval) // 29 samples taken
		synctest.Wait()
		if got := baseline(); got != 0 {
			t.Fatalf("baseline after 29 samples = %d; want 0 (not fixed yet)", got)
		}
		time.Sleep(cfg.LeakSampleInterval)
		synctest.Wait()
		if got := baseline(); got != 50 {
			t.Fatalf("baseline after 30 samples = %d; want 50", got)
		}
		goroutines.Store(151)
		time.Sleep(cfg.LeakSampleInterval - time.Nanosecond)
		synctest.Wait()
		if d.Suspected() {
			t.Fatal("Suspected() before the next sample = true; want false")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !d.Suspected() {
			t.Fatal("Suspected() after a sample at 151 over baseline 50 = false; want true")
		}
		sessions.Store(1) // one session explains 40 of them
		time.Sleep(cfg.LeakSampleInterval)
		synctest.Wait()
		if d.Suspected() {
			t.Fatal("Suspected() once a session explains the growth = true; want false")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v; want nil", err)
		}
	})
}
