package load

import (
	"math"
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// histogram counts durations (nanoseconds) in log-linear buckets: 32
// sub-buckets per power of two, so a quantile is within about 3% of the
// true value whatever the scale, in fixed memory and with no allocation per
// sample. The zero value is ready to use; it is not safe for concurrent use.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits) * histSub
)

func histBucket(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1
	return e*histSub + int(v>>e)
}

// histLow is the smallest value that falls in bucket i.
func histLow(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	e := i/histSub - 1
	return int64(i-e*histSub) << e
}

func (h *histogram) record(v int64) {
	v = max(v, 0)
	h.counts[histBucket(uint64(v))]++
	h.n++
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value below which a fraction q of the samples lie:
// the middle of the bucket holding the rank, capped at the largest sample.
// It is 0 with no samples.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			return min(lo+(hi-lo-1)/2, h.max)
		}
	}
	return h.max
}

// source is one synthetic media stream (a publisher's audio or video).
// Its measurement window is the sequence range [lo, hi): lo is the next
// sequence number when the window opens, hi the next one once its sender
// has stopped, so every number in the range was sent exactly once.
type source struct {
	id   uint32
	kind mediaKind
	next atomic.Uint32 // next sequence number to send
	lo   atomic.Uint32 // first sequence in the window; noWindow until opened
	hi   atomic.Uint32 // one past the last sequence in the window; set by close
}

const noWindow = math.MaxUint32

func newSource(id uint32, kind mediaKind) *source {
	s := &source{id: id, kind: kind}
	s.lo.Store(noWindow)
	return s
}

// openWindow starts counting at the next packet the source sends.
func (s *source) openWindow() { s.lo.Store(s.next.Load()) }

// closeWindow ends the window after the last packet sent. The caller must
// have stopped the source's sender first.
func (s *source) closeWindow() { s.hi.Store(s.next.Load()) }

// expected is how many packets the window holds (0 before it opened).
func (s *source) expected() uint64 {
	lo, hi := s.lo.Load(), s.hi.Load()
	if lo == noWindow || hi < lo {
		return 0
	}
	return uint64(hi - lo)
}

// sourceSet finds a source by the id in a packet's stamp. Sources are added
// as participants start publishing; receivers look one up once per stream.
type sourceSet struct {
	mu sync.RWMutex // guards m
	m  map[uint32]*source
	n  atomic.Uint32 // last id handed out
}

func newSourceSet() *sourceSet { return &sourceSet{m: make(map[uint32]*source)} }

// add creates a source with a fresh id.
func (ss *sourceSet) add(kind mediaKind) *source {
	s := newSource(ss.n.Add(1), kind)
	ss.mu.Lock()
	ss.m[s.id] = s
	ss.mu.Unlock()
	return s
}

func (ss *sourceSet) get(id uint32) *source {
	if ss == nil {
		return nil
	}
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	return ss.m[id]
}

// window is one receiver's view of one source: which sequence numbers of
// the source's window arrived. A bitset rather than a counter, so reordered
// packets are not loss and duplicates are not double-counted.
type window struct {
	src     *source
	unasked bool // the sink never expected this source: its packets are unexpected
	seen    []uint64
	got     uint64 // distinct packets of the window received
	dup     uint64 // packets of the window received more than once
}

// mark records sequence seq and reports whether it is new and inside the
// window (so its latency belongs in the window's histogram).
func (w *window) mark(seq uint32) bool {
	lo := w.src.lo.Load()
	if lo == noWindow || seq < lo {
		return false // before the window (warm-up); senders stop at hi, so nothing comes after it
	}
	i := seq - lo
	word, bit := int(i/64), uint64(1)<<(i%64)
	if word >= len(w.seen) {
		w.seen = append(w.seen, make([]uint64, word+1-len(w.seen)+len(w.seen)/2)...)
	}
	if w.seen[word]&bit != 0 {
		w.dup++
		return false
	}
	w.seen[word] |= bit
	w.got++
	return true
}

// sink is one receiving participant's accounting: a window per source it
// should receive, the latency of every in-window packet, and when its
// first packet of each kind arrived. Every method is safe for concurrent
// use (a participant's tracks are read on separate goroutines).
type sink struct {
	clk     clock
	sources *sourceSet
	total   *atomic.Uint64 // packets received by every sink of the run, for the progress line

	arrived chan struct{} // closed at the first packet of a known source
	// light: a light subscriber's sink (see light.go), which records no
	// latency: most of its packets carry none it can read.
	light bool

	mu         sync.Mutex // guards everything below
	windows    map[uint32]*window
	lat        histogram
	unexpected uint64 // stamped packets from a source this sink should not get
	first      [kindCount]int64
}

func newSink(clk clock, sources *sourceSet, total *atomic.Uint64) *sink {
	return &sink{clk: clk, sources: sources, total: total, windows: make(map[uint32]*window), arrived: make(chan struct{})}
}

// expect declares that this sink should receive src, so its window counts
// as loss if nothing arrives.
func (k *sink) expect(src *source) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if w := k.windows[src.id]; w != nil {
		w.unasked = false
		return
	}
	k.windows[src.id] = &window{src: src}
}

// observe accounts one received payload at clock time now.
func (k *sink) observe(p []byte, now int64) {
	st, ok := readStamp(p)
	if !ok {
		return
	}
	k.total.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	w := k.windows[st.stream]
	if w == nil {
		src := k.sources.get(st.stream)
		if src == nil {
			k.unexpected++
			return
		}
		w = k.windowOf(src)
	}
	if k.account(w, st.seq, now) && !k.light {
		k.lat.record(now - st.sent)
	}
}

// observeLight accounts a packet a light subscriber read at its socket
// at clock time now: sequence seq of src. It has no send time.
func (k *sink) observeLight(src *source, seq uint32, now int64) {
	k.total.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.account(k.windowOf(src), seq, now)
}

// windowOf is src's window, made unasked if the sink did not expect it.
// The caller holds mu.
func (k *sink) windowOf(src *source) *window {
	w := k.windows[src.id]
	if w == nil {
		w = &window{src: src, unasked: true}
		k.windows[src.id] = w
	}
	return w
}

// account marks seq in w, received at now, and reports whether it was
// new, inside the window, and expected (its latency belongs in the
// histogram). The caller holds mu.
func (k *sink) account(w *window, seq uint32, now int64) bool {
	if k.first[w.src.kind] == 0 {
		if k.first == [kindCount]int64{} {
			close(k.arrived)
		}
		k.first[w.src.kind] = now
	}
	return w.mark(seq) && !w.unasked
}

// firstAt is the clock time of the first packet of kind, or of any kind
// with kindCount; 0 when none arrived yet.
func (k *sink) firstAt(kind mediaKind) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kind != kindCount {
		return k.first[kind]
	}
	var t int64
	for _, f := range k.first {
		if f != 0 && (t == 0 || f < t) {
			t = f
		}
	}
	return t
}

// complete reports whether every expected window has all its packets.
func (k *sink) complete() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.windows {
		if !w.unasked && w.got < w.src.expected() {
			return false
		}
	}
	return true
}

// mediaTotals is the media part of a result, summed over sinks.
type mediaTotals struct {
	expected   uint64
	lostKind   [kindCount]uint64 // lost packets by kind
	got        uint64
	dup        uint64
	unexpected uint64
	lat        histogram
}

func (t *mediaTotals) add(k *sink) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.windows {
		if w.unasked {
			t.unexpected += w.got + w.dup
			continue
		}
		exp := w.src.expected()
		t.expected += exp
		t.got += w.got
		t.dup += w.dup
		if w.got < exp {
			t.lostKind[w.src.kind] += exp - w.got
		}
	}
	t.unexpected += k.unexpected
	t.lat.merge(&k.lat)
}

func (t *mediaTotals) lost() uint64 {
	if t.got >= t.expected {
		return 0
	}
	return t.expected - t.got
}

// durations keeps a small set of durations (one per join) for quantiles.
type durations struct {
	mu sync.Mutex // guards d
	d  []time.Duration
}

func (d *durations) add(v time.Duration) {
	d.mu.Lock()
	d.d = append(d.d, v)
	d.mu.Unlock()
}

// count is how many durations were recorded.
func (d *durations) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.d)
}

// split is the report of one part of the join times.
func (d *durations) split() joinSplit {
	return joinSplit{Joins: d.count(), FirstMediaP50: ms(d.quantile(0.5)), FirstMediaP95: ms(d.quantile(0.95))}
}

// quantile is the nearest-rank quantile q of the recorded durations.
func (d *durations) quantile(q float64) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d.d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(q * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}
