package turn

import (
	"net/netip"
	"sync"
	"time"
)

// maxSources bounds the sources the limiter remembers. A flood from more
// spoofed sources than this is refused outright rather than let grow the
// map: refusing is what the limiter is for.
const maxSources = 1 << 16

// sweepInterval spaces out the scans for forgotten sources, so that a full
// table does not cost a scan per packet.
const sweepInterval = time.Second

// limiter is a token bucket per source IP for TURN/UDP requests from
// clients without an allocation. Every such request is answered (a 401
// with a nonce, a binding response, an error), and UDP sources can be
// spoofed, so unbounded answers would make the relay an amplifier aimed
// at whoever the source claims to be.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex // guards buckets and lastSweep
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: map[netip.Addr]*bucket{}}
}

// allow takes one token from ip's bucket and reports whether there was one.
func (l *limiter) allow(ip netip.Addr) bool {
	return l.take(ip, true)
}

// charge takes one token from ip's bucket even when it has none left, so
// that failed authentications make a source wait longer.
func (l *limiter) charge(ip netip.Addr) {
	l.take(ip, false)
}

func (l *limiter) take(ip netip.Addr, needToken bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= maxSources && !l.sweep(now) {
			return false
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if needToken && b.tokens < 1 {
		return false
	}
	b.tokens = max(b.tokens-1, -l.burst)
	return true
}

// sweep forgets sources whose buckets have refilled, as a fresh bucket
// would be the same, and reports whether room was made.
func (l *limiter) sweep(now time.Time) bool {
	if now.Sub(l.lastSweep) < sweepInterval {
		return false
	}
	l.lastSweep = now
	for ip, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, ip)
		}
	}
	return len(l.buckets) < maxSources
}

// isSTUNRequest reports whether b is a STUN request (RFC 8489 section 5:
// top two bits zero, the magic cookie, class bits 00), the only kind of
// message a TURN server answers. ChannelData and indications get no answer
// and pass unmetered.
func isSTUNRequest(b []byte) bool {
	if len(b) < 20 || b[0]&0xc0 != 0 {
		return false
	}
	if b[4] != 0x21 || b[5] != 0x12 || b[6] != 0xa4 || b[7] != 0x42 {
		return false
	}
	return b[0]&0x01 == 0 && b[1]&0x10 == 0 // class bits C1 (bit 8) and C0 (bit 4)
}
