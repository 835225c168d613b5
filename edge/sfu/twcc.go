package sfu

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// twccHistory is how many sent packets a connection remembers for
// transport-wide feedback: a power of two, so a sequence number indexes
// it directly. Feedback comes every 100 ms or so; 4096 packets are over
// 2 s of a 15 Mbit/s downlink, so a packet is forgotten only long after
// its feedback was due.
const twccHistory = 4096

// sentPacket is what a connection remembers of one packet it sent.
type sentPacket struct {
	at    time.Duration // when it was written, since the sender's epoch
	size  uint16        // bytes on the wire above UDP, without SRTP's tag
	seq   uint16        // transport-wide sequence number: tells a stale slot
	probe bool          // padding sent to probe the link
	valid bool
	// missed: a feedback reported it not received; acked: received.
	// Pion's recorder reports a packet that arrives after one already
	// reported in its next feedback, with those after it again: packets
	// stamped on different goroutines leave out of order when the host
	// is busy. Each packet counts once, and a late one is not lost.
	missed, acked bool
}

// twccSender stamps a subscriber connection's packets with its
// transport-wide sequence numbers and remembers when each was sent and
// how big it was, so the subscriber's feedback can be turned into delays
// and losses. mu guards everything: the publications' read loops, the
// retransmitter and the prober stamp concurrently, and the feedback is
// read on the SRTCP goroutine. Stamping is one lock and a slot write; it
// allocates nothing.
type twccSender struct {
	epoch time.Time

	mu    sync.Mutex
	next  uint16
	bytes uint64 // media sent in all (probes not counted)
	sent  [twccHistory]sentPacket
}

func newTWCCSender() *twccSender { return &twccSender{epoch: time.Now()} }

// now is the time since the sender's epoch (monotonic).
func (t *twccSender) now() time.Duration { return time.Since(t.epoch) }

// stamp takes the next sequence number for a packet of size bytes about
// to be written and records it.
func (t *twccSender) stamp(size int, probe bool) uint16 { return t.stampAt(t.now(), size, probe) }

// stampAt is stamp for a packet written at (now, read by the caller).
func (t *twccSender) stampAt(at time.Duration, size int, probe bool) uint16 {
	t.mu.Lock()
	seq := t.next
	t.next++
	if !probe {
		t.bytes += uint64(size)
	}
	t.sent[seq%twccHistory] = sentPacket{at: at, size: uint16(min(size, 0xffff)), seq: seq, probe: probe, valid: true}
	t.mu.Unlock()
	return seq
}

// sentBytes is how many bytes of media (not probes) have been stamped.
func (t *twccSender) sentBytes() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bytes
}

// stampHeader adds the transport-wide sequence extension (id) to h, with
// exts and buf as its storage so nothing is allocated, stamps a packet of
// h and payloadLen bytes and returns its size.
func (t *twccSender) stampHeader(h *rtp.Header, exts *[1]rtp.Extension, buf *[2]byte, id uint8, payloadLen int, probe bool) int {
	return t.stampHeaderAt(t.now(), h, exts, buf, id, payloadLen, probe)
}

// stampHeaderAt is stampHeader for a packet written at (now, read by
// the caller).
func (t *twccSender) stampHeaderAt(at time.Duration, h *rtp.Header, exts *[1]rtp.Extension, buf *[2]byte, id uint8, payloadLen int, probe bool) int {
	h.Extension, h.Extensions = false, exts[:0]
	_ = h.SetExtension(id, buf[:])
	size := h.MarshalSize() + payloadLen
	binary.BigEndian.PutUint16(buf[:], t.stampAt(at, size, probe))
	return size
}

// packetResult is the fate of one sent packet, as feedback reports it.
type packetResult struct {
	sent     time.Duration // send time, sender's clock
	arrived  time.Duration // arrival time, receiver's clock (meaningful only relative to other arrivals)
	size     int
	received bool
	probe    bool
	late     bool // reported lost by an earlier feedback
}

// results turns one transport-wide feedback message (its bytes, an RTPFB
// packet of format 15) into the fate of every packet it covers that is
// still remembered, appended to out in sequence order. It reads the
// message in place: a subscriber sends one every 100 ms or so, and
// parsing it into pion/rtcp's structures allocated a slice for its
// chunks, its deltas and every run of statuses, the most of anything the
// instance allocated in a fan-out. A malformed message yields the packets
// before the fault.
func (t *twccSender) results(fb []byte, out []packetResult) []packetResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	eachFeedbackPacket(fb, func(seq uint16, received bool, arrived time.Duration) {
		if p := &t.sent[seq%twccHistory]; p.valid && p.seq == seq && !p.acked {
			out = append(out, packetResult{sent: p.at, arrived: arrived, size: int(p.size), received: received, probe: p.probe, late: received && p.missed})
			p.missed, p.acked = !received, received
		}
	})
	return out
}

// Transport-wide feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01,
// section 3.1): after the RTCP header and the two SSRCs, the base sequence
// number, the status count, a 24-bit reference time in 64 ms units and a
// feedback count; then 16-bit chunks of statuses, then a receive delta
// for each packet received (in 250 µs units: one unsigned byte for a
// small delta, two signed bytes for a large one).
const (
	twccFixedLen  = 20
	twccDeltaUnit = 250 * time.Microsecond
	twccSmall     = 1 // status: received, small delta
	twccLarge     = 2 // status: received, large delta
)

// eachFeedbackPacket calls f with the sequence number, status and arrival
// time (the reference time plus the deltas so far) of each packet a
// feedback message covers, in order, until the message's status count or
// a fault: chunks or deltas running out, a reserved status.
func eachFeedbackPacket(fb []byte, f func(seq uint16, received bool, arrived time.Duration)) {
	if len(fb) < twccFixedLen {
		return
	}
	seq := binary.BigEndian.Uint16(fb[12:14])
	count := int(binary.BigEndian.Uint16(fb[14:16]))
	arrived := time.Duration(uint32(fb[16])<<16|uint32(fb[17])<<8|uint32(fb[18])) * 64 * time.Millisecond
	chunks := fb[twccFixedLen:]
	n := eachStatus(chunks, count, func(uint8) bool { return true })
	if n < 0 {
		return
	}
	deltas := chunks[n:]
	eachStatus(chunks, count, func(status uint8) bool {
		switch status {
		case twccSmall:
			if len(deltas) < 1 {
				return false
			}
			arrived += time.Duration(deltas[0]) * twccDeltaUnit
			deltas = deltas[1:]
		case twccLarge:
			if len(deltas) < 2 {
				return false
			}
			arrived += time.Duration(int16(binary.BigEndian.Uint16(deltas))) * twccDeltaUnit
			deltas = deltas[2:]
		case 0:
		default:
			return false
		}
		f(seq, status != 0, arrived)
		seq++
		return true
	})
}

// eachStatus calls f with each of the first count statuses that chunks
// hold, until f returns false, and returns how many bytes of chunks held
// them: -1 when the chunks end first. A run length chunk holds up to
// 2^13-1 statuses, so a hostile one costs no more than a real message.
func eachStatus(chunks []byte, count int, f func(status uint8) bool) int {
	i := 0
	for count > 0 {
		if len(chunks)-i < 2 {
			return -1
		}
		c := binary.BigEndian.Uint16(chunks[i:])
		i += 2
		switch {
		case c>>15 == 0: // run length: a 2-bit status, a 13-bit count
			status, run := uint8(c>>13&3), min(int(c&0x1fff), count)
			for range run {
				if !f(status) {
					return i
				}
			}
			count -= run
		case c>>14&1 == 0: // status vector of 14 one-bit statuses
			for b := 13; b >= 0 && count > 0; b, count = b-1, count-1 {
				if !f(uint8(c >> b & 1)) {
					return i
				}
			}
		default: // status vector of 7 two-bit statuses
			for b := 12; b >= 0 && count > 0; b, count = b-2, count-1 {
				if !f(uint8(c >> b & 3)) {
					return i
				}
			}
		}
	}
	return i
}

// twccExtensionID is the transport-cc header extension's id negotiated
// on a track, or 0 when the subscriber did not take it.
func twccExtensionID(ctx webrtc.TrackLocalContext) uint8 {
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == sdp.TransportCCURI {
			return uint8(e.ID)
		}
	}
	return 0
}

// eachRTCP calls f with the type, format (the header's count field) and
// bytes of each packet of a compound RTCP packet, by their headers alone,
// until f returns false or a length runs past the end. It lets a reader
// parse only the packets it wants: the compound packets a subscriber
// sends carry transport-wide feedback, whose parse allocates, beside
// the rare NACK or PLI.
func eachRTCP(pkt []byte, f func(typ rtcp.PacketType, format uint8, sub []byte) bool) {
	for len(pkt) >= 4 {
		n := (int(binary.BigEndian.Uint16(pkt[2:4])) + 1) * 4
		if n > len(pkt) || !f(rtcp.PacketType(pkt[1]), pkt[0]&0x1f, pkt[:n]) {
			return
		}
		pkt = pkt[n:]
	}
}
