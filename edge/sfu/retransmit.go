package sfu

import "sync"

// slotSize bounds a buffered packet: Pion reads at most 1460 bytes per
// packet (its receive MTU), so 1500 holds any packet we forward.
const slotSize = 1500

// packetRing keeps the last N packets of one video publication, as they
// arrived from the publisher, indexed by sequence number, so that a NACK
// from any subscriber is answered from one copy instead of one buffer per
// subscriber. The memory is allocated once (N*1500 bytes, 750 KiB at the
// default 512) and reused.
//
// mu guards every field: the publication's read loop writes, the
// subscribers' RTCP goroutines read.
type packetRing struct {
	mu   sync.Mutex
	data []byte   // len(seqs) slots of slotSize bytes
	lens []uint16 // bytes in each slot; 0 = empty
	seqs []uint16 // sequence number held by each slot
	mask uint16
}

// newPacketRing makes a ring of n slots; n is a power of two.
func newPacketRing(n int) *packetRing {
	return &packetRing{
		data: make([]byte, n*slotSize),
		lens: make([]uint16, n),
		seqs: make([]uint16, n),
		mask: uint16(n - 1),
	}
}

// put stores pkt under seq, replacing the packet n sequence numbers older.
// Packets too large for a slot are not kept.
func (r *packetRing) put(seq uint16, pkt []byte) {
	if len(pkt) > slotSize {
		return
	}
	i := int(seq & r.mask)
	r.mu.Lock()
	copy(r.data[i*slotSize:], pkt)
	r.lens[i] = uint16(len(pkt))
	r.seqs[i] = seq
	r.mu.Unlock()
}

// get copies the packet with seq into dst and returns its length, or 0 when
// it is no longer (or never was) buffered.
func (r *packetRing) get(seq uint16, dst []byte) int {
	i := int(seq & r.mask)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lens[i] == 0 || r.seqs[i] != seq {
		return 0
	}
	return copy(dst, r.data[i*slotSize:i*slotSize+int(r.lens[i])])
}
