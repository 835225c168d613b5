package load

import (
	"math"
	"sync/atomic"
	"testing"
	"time"
)

func TestStampRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		size int
		s    stamp
	}{
		{"smallest", stampSize, stamp{stream: 1, seq: 0, sent: 1}},
		{"video sized", 1100, stamp{stream: 7, seq: 123456, sent: int64(3 * time.Hour)}},
		{"max values", 64, stamp{stream: math.MaxUint32, seq: math.MaxUint32 - 1, sent: math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := make([]byte, tt.size)
			putStamp(p, tt.s)
			got, ok := readStamp(p)
			if !ok || got != tt.s {
				t.Errorf("readStamp(putStamp(%+v)) = %+v, %v; want %+v, true", tt.s, got, ok, tt.s)
			}
		})
	}
}

func TestReadStampRejectsForeignPayloads(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"too short", make([]byte, stampSize-1)},
		{"zeros", make([]byte, 200)},
		{"magic not at the tail", append(append([]byte{}, stampMagic[:]...), make([]byte, 40)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, ok := readStamp(tt.p); ok {
				t.Errorf("readStamp(%s) = %+v, true; want false", tt.name, s)
			}
		})
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var uniform histogram
	for v := int64(1); v <= 10000; v++ {
		uniform.record(v * int64(time.Microsecond))
	}
	var small histogram
	for _, v := range []int64{3, 1, 2, 5, 4} {
		small.record(v)
	}
	tests := []struct {
		name string
		h    *histogram
		q    float64
		want int64
		tol  float64 // relative
	}{
		{"uniform p50", &uniform, 0.50, 5000 * int64(time.Microsecond), 0.035},
		{"uniform p95", &uniform, 0.95, 9500 * int64(time.Microsecond), 0.035},
		{"uniform p99", &uniform, 0.99, 9900 * int64(time.Microsecond), 0.035},
		{"uniform p100 is the max", &uniform, 1, 10000 * int64(time.Microsecond), 0},
		{"small exact p0", &small, 0, 1, 0},
		{"small exact p50", &small, 0.5, 3, 0},
		{"small exact p100", &small, 1, 5, 0},
		{"empty", &histogram{}, 0.99, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.quantile(tt.q)
			if diff := math.Abs(float64(got - tt.want)); diff > tt.tol*float64(tt.want) {
				t.Errorf("quantile(%g) = %d; want %d (±%.1f%%)", tt.q, got, tt.want, 100*tt.tol)
			}
		})
	}
}

func TestHistogramBucketsAreMonotonic(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 31, 32, 33, 63, 64, 65, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		b := histBucket(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("histBucket(%d) = %d; want in [%d, %d)", v, b, prev, histBuckets)
		}
		if lo := histLow(b); uint64(lo) > v || uint64(histLow(b+1)) <= v && b+1 < histBuckets {
			t.Fatalf("histBucket(%d) = %d with range [%d, %d); want the value inside", v, b, lo, histLow(b+1))
		}
		prev = b
	}
}

func TestWindowAccounting(t *testing.T) {
	tests := []struct {
		name     string
		lo, hi   uint32
		received []uint32
		got, dup uint64
		lost     uint64
	}{
		{"all in order", 10, 15, []uint32{10, 11, 12, 13, 14}, 5, 0, 0},
		{"reordered is not loss", 10, 15, []uint32{11, 10, 14, 12, 13}, 5, 0, 0},
		{"duplicates counted once", 10, 13, []uint32{10, 10, 11, 12, 12, 12}, 3, 3, 0},
		{"gaps are loss", 0, 10, []uint32{0, 2, 4, 6, 8}, 5, 0, 5},
		{"warm-up packets ignored", 100, 103, []uint32{97, 98, 99, 100, 101, 102}, 3, 0, 0},
		{"nothing arrived", 0, 4, nil, 0, 0, 4},
		{"window past one bitset word", 0, 300, seqRange(0, 300), 300, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(1, kindVideo)
			src.next.Store(tt.lo)
			src.openWindow()
			src.next.Store(tt.hi)
			src.closeWindow()
			var total atomic.Uint64
			k := newSink(newClock(), nil, &total)
			k.expect(src)
			p := make([]byte, 64)
			for _, seq := range tt.received {
				putStamp(p, stamp{stream: 1, seq: seq, sent: 1})
				k.observe(p, 2)
			}
			var m mediaTotals
			m.add(k)
			if m.got != tt.got || m.dup != tt.dup || m.lost() != tt.lost {
				t.Errorf("after %v in [%d,%d): got, dup, lost = %d, %d, %d; want %d, %d, %d",
					tt.received, tt.lo, tt.hi, m.got, m.dup, m.lost(), tt.got, tt.dup, tt.lost)
			}
			if m.lostKind[kindVideo] != tt.lost || m.lostKind[kindAudio] != 0 {
				t.Errorf("lost by kind = %v; want %d video, 0 audio", m.lostKind, tt.lost)
			}
			if m.lat.n != tt.got {
				t.Errorf("latency samples = %d; want one per new in-window packet, %d", m.lat.n, tt.got)
			}
		})
	}
}

func seqRange(lo, hi uint32) []uint32 {
	var s []uint32
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

func TestSinkUnexpectedSource(t *testing.T) {
	var total atomic.Uint64
	k := newSink(newClock(), nil, &total)
	p := make([]byte, 64)
	putStamp(p, stamp{stream: 99, seq: 0, sent: 1})
	k.observe(p, 5)
	var m mediaTotals
	m.add(k)
	if m.unexpected != 1 || m.got != 0 {
		t.Errorf("packet of an undeclared source: unexpected, got = %d, %d; want 1, 0", m.unexpected, m.got)
	}
}

func TestDurationsQuantile(t *testing.T) {
	var d durations
	for _, ms := range []int{50, 10, 40, 20, 30, 60, 70, 80, 90, 100} {
		d.add(time.Duration(ms) * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.95, 100 * time.Millisecond}, {0.1, 10 * time.Millisecond}, {1, 100 * time.Millisecond}}
	for _, tt := range tests {
		if got := d.quantile(tt.q); got != tt.want {
			t.Errorf("quantile(%g) = %s; want %s", tt.q, got, tt.want)
		}
	}
}
