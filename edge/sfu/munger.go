package sfu

import (
	"time"
)

// spanHistory is how many layer switches back a subscription can still
// map a NACK. A NACK comes a round trip and the receiver's NACK interval
// (about 100 ms) after the loss; a subscriber switches a few times a
// minute, but a test or a flapping estimate may switch every few frames,
// so the spans reach back as far as 64 switches (1.5 KiB a subscription).
const spanHistory = 64

// A span is a run of outgoing packets taken from one layer with the same
// offsets: from its first outgoing sequence number on, until the next
// switch, source = outgoing + offset for sequence number, timestamp, VP8
// picture ID and TL0PICIDX (all modular).
type span struct {
	layer   int8
	from    uint16 // first outgoing sequence number
	srcFrom uint16 // its source sequence number (the keyframe's)
	seq     uint16
	ts      uint32
	pic     uint16
	tl0     uint8
}

// vp8Rewrite reports whether a VP8 payload under sp needs its picture ID
// or TL0PICIDX changed.
func (sp *span) vp8Rewrite(d *vp8Descriptor) bool {
	return (d.picAt != 0 && sp.pic != 0) || (d.tl0At != 0 && sp.tl0 != 0)
}

// writeVP8 rewrites, in payload (which d was parsed from), the picture ID
// and TL0PICIDX to the outgoing stream's.
func (sp *span) writeVP8(payload []byte, d *vp8Descriptor) {
	d.write(payload, (d.pic-sp.pic)&d.picMask(), d.tl0-sp.tl0)
}

// munger is the rewrite state of one outgoing stream whose source layer
// may change: what the subscriber has been sent so far and the spans
// that map it back to the layers. The zero munger has sent nothing.
//
// Every forwarded packet reads the fields before spans and the current
// span, so they come first: with one span (a plain track's whole life)
// that is one or two cache lines, not three 1 KiB apart.
type munger struct {
	cur     int8 // the layer forwarded now; -1 none
	started bool // a first packet has been sent
	n       int  // spans made; the newest is spans[(n-1)%spanHistory]

	// The newest packet sent (highest outgoing sequence number).
	lastSeq uint16
	lastTS  uint32
	lastAt  time.Duration // its arrival, since ringClock
	hasPic  bool          // a VP8 picture ID has been sent: lastPic is one
	lastPic uint16
	lastTL0 uint8
	srcHigh uint16 // the newest source sequence number of the current span

	spans [spanHistory]span
}

func newMunger() munger { return munger{cur: -1} }

// span is the current span; the munger has started.
func (m *munger) span() *span { return &m.spans[(m.n-1)%spanHistory] }

// switchTo starts a span on layer at the packet in (a keyframe, unless it
// is the stream's very first packet from a plain track), so that it
// follows the last packet sent: the next sequence number, a timestamp
// later by the time between their arrivals (at least one tick) at clock
// Hz, and the next picture ID and TL0PICIDX. The first span has no
// offsets: a plain track's stream is the publisher's, numbers and all.
func (m *munger) switchTo(layer int8, in *inbound, d *vp8Descriptor, clock uint32) {
	h := in.h
	sp := span{layer: layer, from: h.SequenceNumber, srcFrom: h.SequenceNumber}
	if m.started {
		sp.from = m.lastSeq + 1
		sp.seq = h.SequenceNumber - sp.from
		ticks := uint32(max(int64(in.at-m.lastAt), 0) * int64(clock) / int64(time.Second))
		sp.ts = h.Timestamp - (m.lastTS + max(ticks, 1))
		if d != nil && d.picAt != 0 && m.hasPic {
			sp.pic = (d.pic - (m.lastPic + 1)) & d.picMask()
		}
		if d != nil && d.tl0At != 0 && m.hasPic {
			sp.tl0 = d.tl0 - (m.lastTL0 + 1)
		}
	}
	m.spans[m.n%spanHistory] = sp
	m.n++
	m.srcHigh = h.SequenceNumber
	m.cur = layer
	if !m.started {
		m.started = true
		m.lastSeq = sp.from - 1
	}
}

// sent records an outgoing packet; only the newest one is kept.
func (m *munger) sent(seq uint16, ts uint32, at time.Duration, d *vp8Descriptor, sp *span) {
	if int16(seq-m.lastSeq) <= 0 {
		return
	}
	m.lastSeq, m.lastTS, m.lastAt = seq, ts, at
	if d != nil && d.picAt != 0 {
		m.hasPic = true
		m.lastPic = (d.pic - sp.pic) & d.picMask()
		m.lastTL0 = d.tl0 - sp.tl0
	}
}

// lookup finds the span an outgoing sequence number was sent under, for
// a NACK; false when it was never sent or is older than the spans kept.
// Distances are counted back from the newest packet sent, so a span of
// any length maps right: a sequence number belongs to the newest span
// that starts at or before it (one that started 32768 or more packets
// back holds everything after it that the history can still have).
func (m *munger) lookup(seq uint16) (span, bool) {
	back := m.lastSeq - seq
	if !m.started || back >= 0x8000 {
		return span{}, false
	}
	for i := range min(m.n, spanHistory) {
		sp := m.spans[(m.n-1-i)%spanHistory]
		if sp.from == m.lastSeq+1 {
			continue // nothing sent under it yet
		}
		if start := m.lastSeq - sp.from; back <= start || start >= 0x8000 {
			return sp, true
		}
	}
	return span{}, false
}

// before reports whether source sequence number seq of the current layer
// is from before the switch to it: its outgoing number would be one
// already used. Once the span has run 16384 packets, nothing from before
// it can still be arriving, and the modular comparison would soon turn
// around, so nothing is.
func (m *munger) before(seq uint16) bool {
	sp := m.span()
	return m.srcHigh-sp.srcFrom < 0x4000 && int16(seq-sp.srcFrom) < 0
}
