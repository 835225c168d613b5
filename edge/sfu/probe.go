package sfu

import (
	"sync"
	"time"

	"github.com/pion/rtp"
)

// Probing. A congested connection sends only what its estimate allows,
// and the estimate never exceeds what the link was seen to carry (times
// ackedHeadroom), so without help it would never find bandwidth that came
// back. A probe sends padding beside the media for probeDuration (longer
// when that sends under probeMinExcess beyond the estimate), at
// probeFactor times the estimate (more after good probes, below) or what
// the subscriptions ask for, whichever is less; padding-only RTP packets on a video subscription's SSRC, in its
// sequence (the munger keeps the media's numbers continuous around
// them), stamped for transport-wide feedback like the media. If the link
// carries it without the delay trend rising, the estimate jumps to the
// rate delivered and the allocation raises layers; if the delay rises,
// the probe stops at once and the next waits twice as long.
//
// Each probe after a good one aims probeGrowth times higher (up to
// probeFactorMax times the estimate), so a link that came back is found
// in a few probes: from a 400 kbit/s cap, 1.5×, 3× then 4× reach the
// 2.5 Mbit/s of a 720p simulcast camera in three probes, about 3 s. A
// failed probe starts again at probeFactor, after a wait doubled up to
// probeMaxWait: on a link still capped a probe every 4 s overruns it by
// half until the queue it builds shows in the delay (a 50 ms tbf queue
// drops a packet or two of media: 0.07 and 0.08 % lost after
// convergence in mediaload capped runs at 400 kbit/s).
const (
	probeDuration = 300 * time.Millisecond
	probeMinWait  = 500 * time.Millisecond // between probes after a good one
	probeMaxWait  = 4 * time.Second        // backoff ceiling after failures
	// probeAfterDecrease: the queue that made the estimate fall must
	// drain before a probe can tell anything.
	probeAfterDecrease = 2 * time.Second
	probeFactor        = 1.5
	probeFactorMax     = 4.0
	probeGrowth        = 2.0
	// probeOvershoot: a probe aims this far above what would lift every
	// cap, since a link delivers a little less than it is sent.
	probeOvershoot = 1.15
	// probeCarried: the share of its target a probe must deliver to
	// count as carried.
	probeCarried = 0.8
	// paddingSize is the padding of one probe packet: the most an RTP
	// padding length byte can say.
	paddingSize = 255
	// maxProbeBurst bounds the packets one feedback interval sends: 256
	// are 5.6 Mbit/s of padding at 100 ms feedback.
	maxProbeBurst = 256
	// probeMinExcess is how much a probe sends beyond the estimate, at
	// least: twice a tc tbf bucket of 8 KiB. A bottleneck with a token
	// bucket passes a burst of that size at line rate after a quiet
	// spell; a probe that fits in it arrives at its own rate without
	// queuing, and a 300 ms probe at 1.5 × a 300 kbit/s link measured
	// 571 kbit/s that way. So a probe lasts until it has sent this much
	// over the estimate (at most probeMaxDuration), and its rate is
	// measured on its second half, after any bucket ran dry.
	probeMinExcess   = 16 << 10
	probeMaxDuration = 1500 * time.Millisecond
)

// prober plans and sends one connection's probes. It is used only on its
// connection's feedback goroutine; plan and feedback run under the
// bandwidth's lock, send after it.
type prober struct {
	twcc *twccSender

	active      bool
	began       time.Duration
	until       time.Duration
	first, last time.Duration // arrivals of the probe's packets
	// and their send times
	sentFirst, sentLast time.Duration
	bytes               int // and their bytes
	target              float64
	factor              float64       // of the estimate, for the next probe
	base                float64       // the estimate when the probe began
	next                time.Duration // no probe before
	wait                time.Duration
	lastAt              time.Duration // last plan
	lastBytes           uint64        // twcc's sent bytes then
	carrier             *Subscription
	pending             int // padding packets to send over the next interval
	pacer               paddingPacer
}

func newProber(t *twccSender) prober { return prober{twcc: t, wait: probeMinWait, factor: probeFactor} }

// feedback judges the active probe on new feedback: a probe ends at
// overuse (failed) or after probeDuration (delivered, with the rate the
// link carried the packets sent since the probe began).
func (p *prober) feedback(now time.Duration, results []packetResult, e *estimator) (float64, bool) {
	if !p.active {
		return 0, false
	}
	from := p.began + (p.until-p.began)/2
	for _, r := range results {
		if !r.received || r.sent < from {
			continue
		}
		if p.bytes == 0 || r.arrived < p.first {
			p.first = r.arrived
		}
		if p.bytes == 0 || r.sent < p.sentFirst {
			p.sentFirst = r.sent
		}
		p.last = max(p.last, r.arrived)
		p.sentLast = max(p.sentLast, r.sent)
		p.bytes += r.size
	}
	if e.overusing() || e.lastDecrease >= p.began {
		// The probe's own padding queued: the link does not carry the
		// target, but what it carried before stands. The backlog the
		// probe left is no reason to cut further.
		p.stop(now, false)
		e.estimate = max(e.estimate, p.base)
		e.quietUntil = now + probeDuration
		e.restartTrend()
		return 0, false
	}
	if now < p.until {
		return 0, false
	}
	span := p.last - p.first
	if span < (p.until-p.began)/4 {
		p.stop(now, false)
		return 0, false
	}
	rate := float64(p.bytes*8) / span.Seconds()
	// No more than the packets were sent at: a bottleneck's token bucket
	// (tc tbf's burst, a router's) passes the probe's first packets at
	// line rate, and their arrivals alone measured a 400 kbit/s link at
	// over 600, enough to raise a layer that did not fit.
	if sent := p.sentLast - p.sentFirst; sent > 0 {
		rate = min(rate, float64(p.bytes*8)/sent.Seconds())
	}
	// A link that carried much less than the target did not carry it,
	// though what it did carry stands.
	p.stop(now, rate >= probeCarried*p.target)
	return rate, true
}

// probeLength is how long a probe excess bit/s over the estimate lasts:
// long enough to send probeMinExcess beyond it, no less than
// probeDuration and no more than probeMaxDuration.
func probeLength(excess float64) time.Duration {
	if excess <= 0 {
		return probeDuration
	}
	d := time.Duration(probeMinExcess * 8 / excess * float64(time.Second))
	return min(max(d, probeDuration), probeMaxDuration)
}

func (p *prober) stop(now time.Duration, ok bool) {
	p.active, p.pending = false, 0
	if ok {
		p.wait = probeMinWait
		p.factor = min(p.factor*probeGrowth, probeFactorMax)
	} else {
		p.wait = min(2*p.wait, probeMaxWait)
		p.factor = probeFactor
	}
	p.next = now + p.wait
}

// plan starts a probe when the connection is held below what it wants
// and the link looks calm, and works out the padding to send now.
func (p *prober) plan(now time.Duration, e *estimator, wanted float64, carriers []*Subscription) {
	sent := p.twcc.sentBytes()
	dt := now - p.lastAt
	rate := 0.0
	if dt > 0 && p.lastAt > 0 {
		rate = float64((sent-p.lastBytes)*8) / dt.Seconds()
	}
	p.lastAt, p.lastBytes, p.pending = now, sent, 0
	if !p.active {
		if e.estimate == 0 || wanted/upgradeMargin <= e.estimate || now < p.next || now-e.lastDecrease < probeAfterDecrease ||
			e.state != usageNormal || len(carriers) == 0 {
			return
		}
		p.active, p.began = true, now
		p.bytes, p.first, p.last, p.sentFirst, p.sentLast = 0, 0, 0, 0, 0
		p.target = min(wanted/upgradeMargin*probeOvershoot, p.factor*e.estimate)
		p.until = now + probeLength(p.target-e.estimate)
		p.base = e.estimate
		p.carrier = carriers[0]
		// The padding starts now: a probe whose first feedback interval
		// went without it measured a third less than it aimed at.
	}
	if missing := p.target - rate; missing > 0 && dt > 0 {
		bytes := missing / 8 * min(dt.Seconds(), 0.2)
		p.pending = min(int(bytes)/paddingSize, maxProbeBurst)
	}
}

// send hands the planned padding to the pacer.
func (p *prober) send(time.Duration) {
	if p.pending == 0 || p.carrier == nil {
		return
	}
	p.pacer.start(p.carrier, p.pending)
	p.pending = 0
}

// paceTick is the interval padding is spread at: a feedback interval's
// padding goes out in about ten slices, so a probe does not queue at the
// bottleneck as one burst and read as overuse.
const paceTick = 10 * time.Millisecond

// paddingPacer sends a probe's padding in slices on a timer: one
// time.AfterFunc at a time, re-armed while padding is left, none while
// idle. mu guards its fields; the padding is written outside it.
type paddingPacer struct {
	mu      sync.Mutex
	carrier *Subscription
	left    int // packets still to send
	per     int // packets a tick
	timer   *time.Timer
	running bool
	closed  bool
}

// start queues n packets on carrier, replacing what was left.
func (q *paddingPacer) start(carrier *Subscription, n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.carrier, q.left = carrier, n
	q.per = max(1, (n+9)/10)
	if q.running {
		return
	}
	q.running = true
	if q.timer == nil {
		q.timer = time.AfterFunc(0, q.tick)
	} else {
		q.timer.Reset(0)
	}
}

func (q *paddingPacer) tick() {
	q.mu.Lock()
	k := min(q.per, q.left)
	q.left -= k
	c := q.carrier
	if q.left > 0 && !q.closed {
		q.timer.Reset(paceTick)
	} else {
		q.running = false
	}
	q.mu.Unlock()
	if k > 0 {
		c.sendPadding(k)
	}
}

// stop drops what is left and sends nothing more.
func (q *paddingPacer) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed, q.left = true, 0
	if q.timer != nil {
		q.timer.Stop()
	}
}

// sendPadding writes n padding-only packets on the subscription's stream
// and returns the bytes sent. The munger opens a span for them that maps
// to no layer, so a NACK for one is a miss, and the media after them
// continues the sequence.
func (s *Subscription) sendPadding(n int) int {
	b := s.bound.Load()
	if b == nil || b.twcc == 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &s.m
	// Padding waits while the pacer holds media: it would take sequence
	// numbers after the held packets' and reach the subscriber first,
	// which reads the gap as loss and asks for them again.
	if !m.started || s.conn.bw.pace.busy() {
		return 0
	}
	// The padding is the header's: Pion writes PaddingSize bytes after the
	// (empty) payload, the last one its count.
	var h rtp.Header
	var exts [1]rtp.Extension
	var ext [2]byte
	h.Version, h.Padding, h.PaddingSize = 2, true, paddingSize
	h.SSRC, h.PayloadType, h.Timestamp = b.ssrc, b.pt, m.lastTS
	first := m.lastSeq + 1
	total := 0
	for i := range n {
		h.SequenceNumber = first + uint16(i)
		size := s.conn.bw.twcc.stampHeader(&h, &exts, &ext, b.twcc, paddingSize, true)
		if _, err := b.w.WriteRTP(&h, nil); err != nil {
			n = i
			break
		}
		total += size
	}
	m.pad(n)
	s.pub.engine.metrics.probeBytes.Add(bgCtx, int64(total))
	return total
}

// pad accounts for n padding packets sent after the newest one: they take
// the next n sequence numbers under a span of no layer, and the stream
// carries on after them.
func (m *munger) pad(n int) {
	if n == 0 {
		return
	}
	from := m.lastSeq + 1
	cur := *m.span()
	m.spans[m.n%spanHistory] = span{layer: -1, from: from}
	m.n++
	m.lastSeq += uint16(n)
	if m.cur < 0 {
		return // a resume starts a span of its own
	}
	cur.from = m.lastSeq + 1
	cur.seq -= uint16(n)
	cur.srcFrom = m.srcHigh
	m.spans[m.n%spanHistory] = cur
	m.n++
}
