package sfu

import (
	"sync"
	"time"

	"github.com/pion/rtp"
)

// Pacing. A congested connection's estimate is what its link carries, but
// video leaves in bursts: a frame's packets are written back to back, and
// a keyframe is several times a frame. On a capped link such a burst
// queues at the bottleneck (and on a shallow queue is dropped) and the
// estimate reads the queue it caused as congestion. The pacer is a leaky
// bucket per connection, filled at the estimate (times paceFactor),
// holding up to paceDepth of it: a video packet goes out at once while the bucket is
// not in debt, and waits in the pacer's queue otherwise, drained by a
// timer at the bucket's rate. So a connection sending under its estimate
// sees no added latency (the bucket is never in debt), and only what
// goes above it, a keyframe on a capped link, is spread out.
//
// The bucket counts video only. Not held: audio (never delayed),
// retransmissions (late already), probe padding (the prober spreads it
// itself, and sends none while the pacer holds media, whose sequence
// numbers come first; while a probe runs the bucket fills at the
// probe's target) and everything on a connection that is not congested
// (there the estimate is not a limit: the allocation grants everything
// asked for). Counting audio, padding and retransmissions in the bucket
// was measured worse: media held behind padding reached the subscriber
// after it, read as loss, and the NACKs and cuts that followed paused
// the video. The transport-wide sequence is stamped when a held packet
// leaves, so the estimator sees the link's delay, not the pacer's.
const (
	// paceFactor: the bucket fills at this times the estimate. At 1.0 the
	// pacer itself caps what the receiver can acknowledge at the
	// estimate, and an estimate under what the allocation still sends
	// (the lowest layer, for pauseAfter) can then only fall: measured, a
	// 400 kbit/s link's estimate spiralled to 73 kbit/s. A quarter above
	// it, a keyframe still reaches a link at about its rate.
	paceFactor = 1.25
	// paceDepth is the bucket's size in time at the rate: a 1.85 Mbit/s
	// layer's 7.7 KB frame passes whole within 40 ms of 2 Mbit/s, and a
	// 400 kbit/s link's 50 ms tbf queue holds what 40 ms of burst adds.
	paceDepth = 40 * time.Millisecond
	// paceMinDepth bounds the bucket from below: two full packets.
	paceMinDepth = 2 * 1500
	// paceMaxDelay is the longest a packet waits: a queue older than
	// this drains regardless of the bucket, so an estimate far under what
	// the allocation sends (a cut not yet obeyed) delays, never starves.
	// A 720p keyframe (15 KB) takes 350 ms at 340 kbit/s: the most of it
	// is spread, the rest follows at once.
	paceMaxDelay = 250 * time.Millisecond
	// paceSlots bounds the queue: 128 packets are paceMaxDelay of a
	// 4 Mbit/s stream; a packet that finds it full goes at once.
	paceSlots = 128
	// paceMaxPayload is the largest payload a slot holds; a larger
	// packet goes at once.
	paceMaxPayload = 1400
)

// pacedPacket is one held packet: its subscription, its rewritten header
// (its CSRCs in its own storage; the transport-wide extension is added
// when it leaves) and payload.
type pacedPacket struct {
	sub     *Subscription
	h       rtp.Header
	csrc    [4]uint32
	ext     [1]rtp.Extension // h's extensions when it leaves
	seq     [2]byte          // and the transport-wide sequence's bytes
	payload [paceMaxPayload]byte
	n       int
	at      time.Duration // when it was held
}

// pacer is one connection's leaky bucket and queue. mu guards every
// field; held packets are written outside it, by the timer's goroutine,
// and inflight counts those popped and not yet written so that a packet
// arriving meanwhile queues behind them instead of overtaking them.
type pacer struct {
	now func() time.Duration
	// write sends one held packet; it runs without mu held.
	write func(*pacedPacket)

	mu       sync.Mutex
	bucket                 // not pacing while its rate is 0; in debt while its tokens are negative
	slots    []pacedPacket // the ring, made on the first hold
	head, n  int
	inflight int
	timer    *time.Timer
	armed    bool
	closed   bool
}

func newPacer(now func() time.Duration, write func(*pacedPacket)) *pacer {
	return &pacer{now: now, write: write, bucket: bucket{span: paceDepth}}
}

// bucket is a token bucket in bytes, filled at its rate up to span's
// worth of it and no less than paceMinDepth (two full packets). Its
// owner's lock guards it.
type bucket struct {
	rate   float64 // bytes/s; 0: no limit
	tokens float64 // bytes; negative: in debt
	last   time.Duration
	span   time.Duration
}

// set sets the rate in bit/s at now: a bucket that starts limiting
// starts full, one that stops holds nothing.
func (b *bucket) set(now time.Duration, bps float64) {
	b.refill(now)
	was := b.rate
	b.rate = bps / 8
	switch {
	case b.rate == 0:
		b.tokens = 0
	case was == 0:
		b.tokens = b.depth()
	}
}

// setRate sets the rate in bit/s the bucket fills at; 0 stops pacing
// (what is queued then drains at once).
func (p *pacer) setRate(bps float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(p.now(), bps)
	if p.n > 0 {
		p.arm(0)
	}
}

// refill adds what the rate has put in the bucket since the last refill.
func (b *bucket) refill(now time.Duration) {
	if now < b.last {
		return // read before a later caller's refill took the lock
	}
	if b.rate > 0 {
		b.tokens = min(b.tokens+b.rate*(now-b.last).Seconds(), b.depth())
	}
	b.last = now
}

// depth is the bucket's size in bytes.
func (b *bucket) depth() float64 { return max(b.rate*b.span.Seconds(), paceMinDepth) }

// busy reports whether the pacer holds packets or is writing them.
func (p *pacer) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n > 0 || p.inflight > 0
}

// hold decides a video packet of size bytes on the wire: it reports false
// when the packet is to be written now (and counts it), true when the
// pacer took a copy of h and payload to write later for s.
func (p *pacer) hold(s *Subscription, h *rtp.Header, payload []byte, size int, now time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate == 0 || p.closed {
		return false
	}
	p.refill(now)
	if p.n == 0 && p.inflight == 0 && p.tokens > 0 {
		p.tokens -= float64(size)
		return false
	}
	if len(payload) > paceMaxPayload || len(h.CSRC) > len(pacedPacket{}.csrc) || p.n+p.inflight == paceSlots {
		p.tokens -= float64(size)
		return false
	}
	if p.slots == nil {
		p.slots = make([]pacedPacket, paceSlots)
	}
	q := &p.slots[(p.head+p.n)%paceSlots]
	p.n++
	q.sub, q.h, q.at = s, *h, now
	q.h.CSRC = q.csrc[:copy(q.csrc[:], h.CSRC)]
	q.h.Extension, q.h.Extensions = false, nil
	q.n = copy(q.payload[:], payload)
	p.arm(time.Duration(-p.tokens / p.rate * float64(time.Second)))
	return true
}

// arm starts the drain timer after d, unless it is running. p.mu is held.
func (p *pacer) arm(d time.Duration) {
	if p.armed || p.closed {
		return
	}
	p.armed = true
	d = max(d, time.Millisecond)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.drain)
	} else {
		p.timer.Reset(d)
	}
}

// drain writes what the bucket allows of the queue, oldest first, and
// what has waited paceMaxDelay whatever the bucket, then re-arms for the
// rest.
func (p *pacer) drain() {
	p.mu.Lock()
	p.armed = false
	now := p.now()
	p.refill(now)
	first, k := p.head, 0
	for p.n-k > 0 {
		q := &p.slots[(first+k)%paceSlots]
		if p.tokens <= 0 && p.rate > 0 && now-q.at < paceMaxDelay && !p.closed {
			break
		}
		p.tokens -= float64(q.h.MarshalSize() + q.n)
		k++
	}
	p.head, p.n = (p.head+k)%paceSlots, p.n-k
	p.inflight += k
	p.mu.Unlock()
	for i := range k {
		p.write(&p.slots[(first+i)%paceSlots])
	}
	p.mu.Lock()
	p.inflight -= k
	if p.n > 0 {
		wait := paceMaxDelay - (now - p.slots[p.head].at)
		if p.rate > 0 {
			wait = min(wait, time.Duration(-p.tokens/p.rate*float64(time.Second)))
		}
		p.arm(wait)
	}
	p.mu.Unlock()
}

// close stops the timer and drops what is held.
func (p *pacer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed, p.n = true, 0
	if p.timer != nil {
		p.timer.Stop()
	}
}
