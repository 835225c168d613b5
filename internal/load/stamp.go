package load

import (
	"encoding/binary"
	"time"
)

// stampSize is the length of the trailer every synthetic payload ends with.
// The trailer sits at the end of the payload, not the start, so codec
// headers (the VP8 payload descriptor) stay where a media server looks for
// them and the server never has to understand our bytes.
const stampSize = 20

// stampMagic marks a payload as ours; a packet without it (a server's
// padding probe, a stray packet) is ignored by the receivers.
var stampMagic = [4]byte{'m', 'l', 'd', '1'}

// stamp is what a receiver learns from one packet: which source sent it,
// the source's own sequence number (servers may rewrite RTP sequence
// numbers, so loss is counted on ours), and when it was sent.
type stamp struct {
	stream uint32 // source id, unique within one run
	seq    uint32 // per-source sequence, from 0
	sent   int64  // send time in clock nanoseconds
}

// putStamp writes s into the last stampSize bytes of p. p must be at least
// stampSize long.
func putStamp(p []byte, s stamp) {
	t := p[len(p)-stampSize:]
	copy(t[0:4], stampMagic[:])
	binary.BigEndian.PutUint32(t[4:8], s.stream)
	binary.BigEndian.PutUint32(t[8:12], s.seq)
	binary.BigEndian.PutUint64(t[12:20], uint64(s.sent))
}

// readStamp parses the trailer of p; ok is false when p carries none.
func readStamp(p []byte) (s stamp, ok bool) {
	if len(p) < stampSize {
		return s, false
	}
	t := p[len(p)-stampSize:]
	if [4]byte(t[0:4]) != stampMagic {
		return s, false
	}
	s.stream = binary.BigEndian.Uint32(t[4:8])
	s.seq = binary.BigEndian.Uint32(t[8:12])
	s.sent = int64(binary.BigEndian.Uint64(t[12:20]))
	return s, true
}

// clock is the run's one monotonic time base. Senders and receivers live in
// the same process and read the same clock, so a receive time minus the
// stamped send time is the one-way forwarding latency, with no clock sync.
type clock struct{ base time.Time }

func newClock() clock { return clock{base: time.Now()} }

// now returns nanoseconds since the clock's base, from the monotonic reading.
func (c clock) now() int64 { return int64(time.Since(c.base)) }
