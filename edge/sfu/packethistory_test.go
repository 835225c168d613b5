package sfu

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"
)

// newTestRing makes a ring of n slots that is released when the test ends,
// and the counter of its bytes.
func newTestRing(t *testing.T, n int) (*packetRing, *atomic.Int64) {
	t.Helper()
	held := new(atomic.Int64)
	r := newPacketRing(n, held)
	t.Cleanup(r.release)
	return r, held
}

// ringPacket is packet seq of a test stream: size bytes derived from seq,
// so a packet read back shows whether it is whole and the right one.
func ringPacket(seq uint16, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(int(seq)*7 + i)
	}
	return b
}

// feed writes count packets of size bytes from seq first at rate packets
// per second, starting at start; it returns the time after the last.
func feed(r *packetRing, first uint16, count, size, rate int, start time.Duration) time.Duration {
	step := time.Second / time.Duration(rate)
	now := start
	for i := range count {
		seq := first + uint16(i)
		r.putAt(seq, ringPacket(seq, size), now)
		now += step
	}
	return now
}

// held reports, for seq, whether the ring returns it and whether what it
// returns is exactly the packet written.
func held(t *testing.T, r *packetRing, seq uint16, size int) bool {
	t.Helper()
	buf := make([]byte, maxRingPacket)
	n := r.get(seq, buf)
	if n == 0 {
		return false
	}
	if want := ringPacket(seq, size); !bytes.Equal(buf[:n], want) {
		t.Fatalf("get(%d) returned %d bytes that are not the packet written (%d bytes)", seq, n, size)
	}
	return true
}

func TestPacketRingGrowsToKeepASecond(t *testing.T) {
	tests := []struct {
		name       string
		rate, size int // packets per second, bytes each
		wantBytes  int // data after 3 s: at least ...
		maxBytes   int // ... and at most
	}{
		// 1 s of 400 x 1130 B is 452 000 B: grown in halves from 64 KiB.
		{"3.5 Mbit/s video", 400, 1130, 452_000, 700_000},
		// 1 s of 100 x 1200 B is 120 000 B.
		{"1 Mbit/s camera", 100, 1200, 120_000, 200_000},
		// A second of 30 small packets fits the first 64 KiB.
		{"low-rate video", 30, 500, ringStartBytes, ringStartBytes},
		// 512 slots of 1500 B cap it whatever the rate.
		{"beyond the cap", 2000, 1500, 512 * maxRingPacket, 512 * maxRingPacket},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, counted := newTestRing(t, 512)
			const count = 3
			feed(r, 60000, count*tt.rate, tt.size, tt.rate, 0)
			t.Logf("history: %d bytes", len(r.data))
			if got := len(r.data); got < tt.wantBytes || got > tt.maxBytes {
				t.Errorf("history after %d s = %d bytes; want %d to %d", count, got, tt.wantBytes, tt.maxBytes)
			}
			if got, want := counted.Load(), int64(len(r.data)); got != want {
				t.Errorf("bytes counted after growing = %d; want %d, the history's size", got, want)
			}
			// Every packet of the last second (bounded by the 512 slots)
			// is there and whole, wrapped past 65535 as it is.
			last := uint16(60000 + count*tt.rate - 1)
			keep := min(tt.rate, 512)
			for i := range keep {
				if seq := last - uint16(i); !held(t, r, seq, tt.size) {
					t.Fatalf("packet %d (%d back from the newest) is gone; want the last %d held", seq, i, keep)
				}
			}
		})
	}
}

func TestPacketRingForgets(t *testing.T) {
	r, _ := newTestRing(t, 64)
	now := feed(r, 0, 64, 1000, 50, 0)
	if !held(t, r, 0, 1000) {
		t.Fatal("packet 0 is gone with 64 slots and 64 packets written; want it held")
	}
	r.putAt(64, ringPacket(64, 1000), now) // takes slot 0
	if held(t, r, 0, 1000) {
		t.Error("packet 0 is still returned after packet 64 took its slot")
	}
	if held(t, r, 65, 1000) {
		t.Error("packet 65 was never written but is returned")
	}
	// At a low rate the history stays small: older packets give way to
	// newer ones in data before their slots are reused.
	r, _ = newTestRing(t, 4096)
	feed(r, 0, 4096, 1400, 10, 0) // 400 s of 10 packets/s
	if len(r.data) != ringStartBytes {
		t.Fatalf("history at 10 packets/s = %d bytes; want it left at %d", len(r.data), ringStartBytes)
	}
	if held(t, r, 0, 1400) {
		t.Error("packet 0 is returned though 4095 packets of 1400 B were written after it into 64 KiB")
	}
	for seq := uint16(4095); seq > 4095-40; seq-- { // the newest 40 fit in 64 KiB
		if !held(t, r, seq, 1400) {
			t.Fatalf("packet %d is gone; want the newest 40 held", seq)
		}
	}
}

func TestPacketRingRefusesOversizedPackets(t *testing.T) {
	r, _ := newTestRing(t, 64)
	r.putAt(1, make([]byte, maxRingPacket+1), 0)
	r.putAt(2, nil, 0)
	buf := make([]byte, 2*maxRingPacket)
	if n := r.get(1, buf); n != 0 {
		t.Errorf("get(1) = %d bytes; want an oversized packet not kept", n)
	}
	if n := r.get(2, buf); n != 0 {
		t.Errorf("get(2) = %d bytes; want an empty packet not kept", n)
	}
}

// TestPacketRingRelease: a released ring gives its memory back (the count
// drops to zero), then keeps and returns nothing, and a second release is
// harmless. Get after release must not touch the freed memory: on Linux it
// is unmapped, and the test would fault.
func TestPacketRingRelease(t *testing.T) {
	held := new(atomic.Int64)
	a := newPacketRing(512, held)
	b := newPacketRing(512, held)
	feed(a, 0, 800, 1200, 400, 0) // grows a past its first size
	if got, want := held.Load(), int64(len(a.data)+len(b.data)); got != want || len(a.data) <= ringStartBytes {
		t.Fatalf("bytes counted for two rings, one grown to %d = %d; want %d", len(a.data), got, want)
	}
	a.release()
	if got, want := held.Load(), int64(ringStartBytes); got != want {
		t.Errorf("bytes counted after releasing the grown ring = %d; want %d (the other)", got, want)
	}
	buf := make([]byte, maxRingPacket)
	if n := a.get(799, buf); n != 0 {
		t.Errorf("get(799) after release = %d bytes; want 0", n)
	}
	a.putAt(800, ringPacket(800, 1200), 2*time.Second)
	if n := a.get(800, buf); n != 0 {
		t.Errorf("get(800) of a packet put after release = %d bytes; want 0", n)
	}
	a.release()
	b.release()
	if got := held.Load(); got != 0 {
		t.Errorf("bytes counted after releasing both rings = %d; want 0", got)
	}
}
