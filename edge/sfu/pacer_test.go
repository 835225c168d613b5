package sfu

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"
)

// pacerLog records when a pacer wrote each packet it held, in fake time.
type pacerLog struct {
	mu    sync.Mutex
	epoch time.Time
	at    []time.Duration
}

func (l *pacerLog) now() time.Duration { return time.Since(l.epoch) }

func (l *pacerLog) write(*pacedPacket) {
	l.mu.Lock()
	l.at = append(l.at, l.now())
	l.mu.Unlock()
}

func (l *pacerLog) sent() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.at...)
}

// TestPaceUnderEstimate: packets sent under the pacer's rate, and any
// packet while it is not pacing, pass at once.
func TestPaceUnderEstimate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &pacerLog{epoch: time.Now()}
		p := newPacer(l.now, l.write)
		defer p.close()
		h := rtp.Header{Version: 2, SSRC: 1}
		payload := make([]byte, 1000)
		for i := range 20 {
			if p.hold(nil, &h, payload, 1020, p.now()) {
				t.Fatalf("packet %d held while not pacing; want it passed", i)
			}
		}
		p.setRate(400e3)
		// 1020 bytes every 40 ms: 204 kbit/s, half the rate.
		for i := range 50 {
			if p.hold(nil, &h, payload, 1020, p.now()) {
				t.Fatalf("packet %d at 204 kbit/s held by a 400 kbit/s pacer; want it passed", i)
			}
			time.Sleep(40 * time.Millisecond)
		}
		if got := l.sent(); len(got) != 0 {
			t.Errorf("pacer wrote %d packets itself; want none held", len(got))
		}
	})
}

// TestPaceBurst: a burst above the rate (a keyframe on a capped link)
// passes while the bucket lasts, and the rest leaves at the rate, in
// order, none waiting past paceMaxDelay.
func TestPaceBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &pacerLog{epoch: time.Now()}
		p := newPacer(l.now, l.write)
		defer p.close()
		const rate, size = 400e3, 1020
		p.setRate(rate)
		time.Sleep(time.Second) // the bucket fills
		h := rtp.Header{Version: 2, SSRC: 1}
		payload := make([]byte, size-20)
		start := l.now()
		passed := 0
		for i := range 10 {
			h.SequenceNumber = uint16(i)
			if !p.hold(nil, &h, payload, size, p.now()) {
				passed++
			}
		}
		// The bucket holds paceMinDepth (3000 bytes, over 40 ms of
		// 400 kbit/s): three packets pass.
		if passed != 3 {
			t.Errorf("%d of a 10-packet burst passed at once; want 3 (the bucket's 3000 bytes)", passed)
		}
		time.Sleep(time.Second)
		sent := l.sent()
		if len(sent) != 10-passed {
			t.Fatalf("pacer wrote %d packets; want the %d it held", len(sent), 10-passed)
		}
		gap := time.Duration(size * 8 / rate * float64(time.Second))
		for i := 1; i < len(sent); i++ {
			if d := sent[i] - sent[i-1]; d < gap-2*time.Millisecond || d > gap+2*time.Millisecond {
				t.Errorf("held packet %d left %s after the one before; want about %s (400 kbit/s)", i, d, gap)
			}
		}
		if last := sent[len(sent)-1] - start; last > paceMaxDelay {
			t.Errorf("last held packet left %s after the burst; want within %s", last, paceMaxDelay)
		}
		if p.busy() {
			t.Error("pacer busy after its queue drained; want idle")
		}
	})
}

// TestPaceHoldDoesNotAllocate: holding a packet copies it into the
// pacer's slots, made once; the forwarding path still allocates nothing.
func TestPaceHoldDoesNotAllocate(t *testing.T) {
	epoch := time.Now()
	p := newPacer(func() time.Duration { return time.Since(epoch) }, func(*pacedPacket) {})
	defer p.close()
	p.setRate(100e3)
	h := rtp.Header{Version: 2, SSRC: 1, CSRC: []uint32{7}}
	payload := make([]byte, 1000)
	for range 10 {
		p.hold(nil, &h, payload, 1028, p.now()) // empties the bucket, makes the slots
	}
	if !p.busy() {
		t.Fatal("pacer holds nothing after a burst above its rate")
	}
	if n := testing.AllocsPerRun(50, func() { p.hold(nil, &h, payload, 1028, p.now()) }); n != 0 {
		t.Errorf("hold allocates %.1f times per packet; want 0", n)
	}
}
