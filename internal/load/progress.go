package load

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints one line a second on stderr while a run goes on.
type progress struct {
	w     io.Writer // nil: quiet
	mu    sync.Mutex
	last  uint64
	lastT time.Duration
}

func (p *progress) printf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// media prints the packets received so far and the rate since the last line.
func (p *progress) media(phase string, elapsed time.Duration, m *mediaRun) {
	if p == nil || p.w == nil {
		return
	}
	n := m.total.Load()
	p.mu.Lock()
	rate := 0.0
	if dt := elapsed - p.lastT; dt > 0 && n >= p.last {
		rate = float64(n-p.last) / dt.Seconds()
	}
	p.last, p.lastT = n, elapsed
	p.mu.Unlock()
	p.printf("%-7s %5.1fs  received %10d  %8.0f pkt/s", phase, elapsed.Seconds(), n, rate)
}

// writer is where progress goes, nil when quiet.
func (p *progress) writer() io.Writer {
	if p == nil || p.w == nil {
		return nil
	}
	return lockedWriter{p}
}

// lockedWriter writes through the progress lock, so lines do not mix.
type lockedWriter struct{ p *progress }

func (l lockedWriter) Write(b []byte) (int, error) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	return l.p.w.Write(b)
}

// reset starts a window's rate from the count received so far.
func (p *progress) reset(m *mediaRun) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.last, p.lastT = m.total.Load(), 0
	p.mu.Unlock()
}

// every prints line() every d until the returned stop is called; stop
// waits for the printer to end.
func (p *progress) every(d time.Duration, line func() string) (stop func()) {
	if p == nil || p.w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.printf("%s", line())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
