package sfu

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sizes of the NACK history (packetRing).
const (
	// maxRingPacket bounds a buffered packet: Pion reads at most 1460
	// bytes per packet (its receive MTU), so 1500 holds any packet we
	// forward.
	maxRingPacket = 1500
	// ringKeep is how far back the history must reach before it stops
	// growing. A resent packet arrives a round trip after the loss at the
	// soonest, and a receiver gives up on a frame's missing packets after
	// a few hundred milliseconds, so a packet older than a second is not
	// worth resending.
	ringKeep = time.Second
	// ringStartBytes is the history's first size: about 55 packets of
	// 1200 bytes, a few hundred milliseconds of ordinary camera video.
	ringStartBytes = 64 << 10
)

// packetRing keeps the recent packets of one video publication, as they
// arrived from the publisher, indexed by sequence number, so that a NACK
// from any subscriber is answered from one copy instead of one buffer per
// subscriber.
//
// It holds at most len(slots) packets (MEDIA_NACK_BUFFER) and packs them
// back to back in data, so it costs what the packets weigh, not a full
// MTU each. data starts at ringStartBytes and grows by half whenever the
// packets written within ringKeep fill it, up to len(slots) packets of
// maxRingPacket bytes: a 1 Mbit/s camera keeps about 145 KiB, 3.5 Mbit/s
// video about 490 KiB, where a fixed slot per packet took 750 KiB at any
// rate. It never shrinks. On Linux data lives outside the Go heap
// (ringAlloc), so it costs resident memory once and not twice, and release
// gives it back when the publication ends; held counts its bytes for
// media_nack_buffer_bytes.
//
// Positions are absolute (bytes written since the last compaction): a
// packet at pos is in data[pos%len(data):] and intact while fewer than
// len(data) bytes have been written after it. A packet never wraps: one
// that would is written at the start of data instead.
//
// mu guards every field: the publication's read loop writes, the
// subscribers' RTCP deliveries read. data is nil once released.
type packetRing struct {
	mu     sync.Mutex
	data   []byte
	mapped bool          // data is from a mapping (ringAlloc)
	held   *atomic.Int64 // bytes of every ring's data, engine-wide
	max    int           // bytes data may grow to
	w      uint64        // position of the next write
	slots  []ringSlot    // by sequence number & mask
	mask   uint16

	winStart time.Duration // start of the growth window (since ringClock)
	winBytes int           // bytes written since winStart
}

// ringSlot is where one buffered packet is.
type ringSlot struct {
	pos uint64
	n   uint16 // bytes; 0 = empty
	seq uint16
}

// ringClock is the monotonic time base of the growth windows.
var ringClock = time.Now()

// newPacketRing makes a ring of n slots; n is a power of two. held
// counts the bytes it takes until release.
func newPacketRing(n int, held *atomic.Int64) *packetRing {
	max := n * maxRingPacket
	r := &packetRing{held: held, max: max, slots: make([]ringSlot, n), mask: uint16(n - 1)}
	r.data, r.mapped = ringAlloc(min(ringStartBytes, max))
	held.Add(int64(len(r.data)))
	return r
}

// release frees data; from then on the ring keeps and returns nothing.
// It is idempotent.
func (r *packetRing) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.data == nil {
		return
	}
	r.held.Add(-int64(len(r.data)))
	ringFree(r.data, r.mapped)
	r.data = nil
}

// put stores pkt under seq, replacing the packet n sequence numbers older
// and, in data, the oldest packets it needs the room of.
func (r *packetRing) put(seq uint16, pkt []byte) {
	r.putAt(seq, pkt, time.Since(ringClock))
}

// putAt is put at time now (since ringClock).
func (r *packetRing) putAt(seq uint16, pkt []byte, now time.Duration) {
	n := len(pkt)
	if n == 0 || n > maxRingPacket {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.data == nil {
		return
	}
	if now-r.winStart >= ringKeep {
		r.winStart, r.winBytes = now, 0
	}
	r.winBytes += n
	if r.winBytes > len(r.data) && len(r.data) < r.max {
		r.grow()
		r.winStart, r.winBytes = now, n
	}
	size := uint64(len(r.data))
	off := r.w % size
	if off+uint64(n) > size { // would wrap: start over at the front
		r.w += size - off
		off = 0
	}
	copy(r.data[off:], pkt)
	r.slots[seq&r.mask] = ringSlot{pos: r.w, n: uint16(n), seq: seq}
	r.w += uint64(n)
}

// intact reports whether the packet in s has not been written over. r.mu
// is held.
func (r *packetRing) intact(s ringSlot) bool {
	return s.n != 0 && r.w <= s.pos+uint64(len(r.data))
}

// grow makes data half as large again (up to max) and moves the intact
// packets into it, oldest first, from position 0. r.mu is held.
func (r *packetRing) grow() {
	size := min(r.max, (len(r.data)*3/2+4095)&^4095)
	live := make([]int, 0, len(r.slots))
	for i, s := range r.slots {
		if r.intact(s) {
			live = append(live, i)
		} else {
			r.slots[i] = ringSlot{}
		}
	}
	slices.SortFunc(live, func(a, b int) int { return cmp.Compare(r.slots[a].pos, r.slots[b].pos) })
	old, oldSize, oldMapped := r.data, uint64(len(r.data)), r.mapped
	r.data, r.mapped = ringAlloc(size)
	r.held.Add(int64(size) - int64(oldSize))
	var w uint64
	for _, i := range live {
		s := &r.slots[i]
		from := s.pos % oldSize
		copy(r.data[w:], old[from:from+uint64(s.n)])
		s.pos = w
		w += uint64(s.n)
	}
	r.w = w
	ringFree(old, oldMapped)
}

// get copies the packet with seq into dst and returns its length, or 0 when
// it is no longer (or never was) buffered.
func (r *packetRing) get(seq uint16, dst []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.slots[seq&r.mask]
	if r.data == nil || s.seq != seq || !r.intact(s) {
		return 0
	}
	from := s.pos % uint64(len(r.data))
	return copy(dst, r.data[from:from+uint64(s.n)])
}
