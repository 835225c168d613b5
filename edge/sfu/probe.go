package sfu

import (
	"time"

	"github.com/pion/rtp"
)

// Probing. A congested connection sends only what its estimate allows,
// and the estimate never exceeds what the link was seen to carry (times
// ackedHeadroom), so without help it would never find bandwidth that came
// back. A probe sends padding beside the media for probeDuration, at
// twice the estimate or what the subscriptions ask for, whichever is
// less; padding-only RTP packets on a video subscription's SSRC, in its
// sequence (the munger keeps the media's numbers continuous around
// them), stamped for transport-wide feedback like the media. If the link
// carries it without the delay trend rising, the estimate jumps to the
// rate delivered and the allocation raises layers; if the delay rises,
// the probe stops at once and the next waits twice as long.
const (
	probeDuration = 600 * time.Millisecond
	probeMinWait  = time.Second     // between probes after a good one
	probeMaxWait  = 8 * time.Second // backoff ceiling after failures
	probeFactor   = 2.0
	// paddingSize is the padding of one probe packet: the most an RTP
	// padding length byte can say.
	paddingSize = 255
	// maxProbeBurst bounds the packets one feedback interval sends.
	maxProbeBurst = 64
)

// prober plans and sends one connection's probes. It is used only on its
// connection's feedback goroutine; plan and feedback run under the
// bandwidth's lock, send after it.
type prober struct {
	twcc *twccSender

	active      bool
	until       time.Duration
	target      float64
	next        time.Duration // no probe before
	wait        time.Duration
	lastAt      time.Duration // last plan
	lastBytes   uint64        // twcc's sent bytes then
	carrier     *Subscription
	pending     int // padding packets to send now
	probedBytes int64
}

func newProber(t *twccSender) prober { return prober{twcc: t, wait: probeMinWait} }

// feedback judges the active probe on new feedback: a probe ends at
// overuse (failed) or after probeDuration (delivered, with the rate the
// link carried).
func (p *prober) feedback(now time.Duration, _ []packetResult, e *estimator) (float64, bool) {
	if !p.active {
		return 0, false
	}
	if e.overusing() {
		p.stop(now, false)
		return 0, false
	}
	if now < p.until {
		return 0, false
	}
	p.stop(now, true)
	return e.acked, true
}

func (p *prober) stop(now time.Duration, ok bool) {
	p.active, p.pending = false, 0
	if ok {
		p.wait = probeMinWait
	} else {
		p.wait = min(2*p.wait, probeMaxWait)
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
		if e.estimate == 0 || wanted <= e.estimate || now < p.next || e.state != usageNormal || len(carriers) == 0 {
			return
		}
		p.active, p.until = true, now+probeDuration
		p.target = min(wanted, probeFactor*e.estimate)
		p.carrier = carriers[0]
		return
	}
	if missing := p.target - rate; missing > 0 && dt > 0 {
		bytes := missing / 8 * min(dt.Seconds(), 0.2)
		p.pending = min(int(bytes)/paddingSize, maxProbeBurst)
	}
}

// send writes the planned padding.
func (p *prober) send(time.Duration) {
	if p.pending == 0 || p.carrier == nil {
		return
	}
	n := p.carrier.sendPadding(p.pending)
	p.pending = 0
	p.probedBytes += int64(n)
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
	if !m.started {
		return 0
	}
	var h rtp.Header
	var exts [1]rtp.Extension
	var ext [2]byte
	var pad [paddingSize]byte
	pad[paddingSize-1] = paddingSize
	h.Version, h.Padding, h.PaddingSize = 2, true, paddingSize
	h.SSRC, h.PayloadType, h.Timestamp = b.ssrc, b.pt, m.lastTS
	first := m.lastSeq + 1
	total := 0
	for i := range n {
		h.SequenceNumber = first + uint16(i)
		size := s.conn.bw.twcc.stampHeader(&h, &exts, &ext, b.twcc, paddingSize, true)
		if _, err := b.w.WriteRTP(&h, pad[:]); err != nil {
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
