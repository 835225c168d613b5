package sfu

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// recordWriter keeps every packet written to a subscription.
type recordWriter struct{ pkts []rtp.Packet }

func (w *recordWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.pkts = append(w.pkts, rtp.Packet{Header: h.Clone(), Payload: bytes.Clone(payload)})
	return h.MarshalSize() + len(payload), nil
}

func (w *recordWriter) Write(b []byte) (int, error) { return len(b), nil }

// vp8Frame is one VP8 packet as a browser sends it: a payload descriptor
// with a 15-bit picture ID and TL0PICIDX, then the VP8 header's first
// byte (keyframe or not) and filler naming the layer and sequence number.
type vp8Frame struct {
	layer int
	seq   uint16
	ts    uint32
	pic   uint16
	tl0   uint8
	key   bool // a keyframe's first packet
}

func (f vp8Frame) payload() []byte {
	b := []byte{0x90, 0xc0, 0x80 | byte(f.pic>>8), byte(f.pic), f.tl0, 0x01}
	if f.key {
		b[5] = 0x00
	}
	return append(b, byte(f.layer), byte(f.seq>>8), byte(f.seq), 0xaa, 0xbb)
}

func (f vp8Frame) marshal(t testing.TB) []byte {
	t.Helper()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: f.seq,
		Timestamp: f.ts, SSRC: 100 + uint32(f.layer), Marker: true}, Payload: f.payload()}
	raw, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// layered is a VP8 publication (three layers unless told) with one
// subscription whose packets are recorded.
type layered struct {
	p   *Publication
	sub *Subscription
	w   *recordWriter
	h   rtp.Header
}

func newLayered(t testing.TB) *layered {
	t.Helper()
	return newLayers(t, maxLayers)
}

// newLayers is newLayered with the given number of layers.
func newLayers(t testing.TB, layers int) *layered {
	t.Helper()
	p := layeredPublication(t, 1, layers)
	sub := (*p.subs.Load())[0]
	w := &recordWriter{}
	sub.bound.Store(&binding{ssrc: 4242, pt: 98, w: w})
	sub.rtx = newRetransmitter(sub)
	return &layered{p: p, sub: sub, w: w}
}

// send forwards f and reports whether the subscriber was sent it.
func (lp *layered) send(t testing.TB, f vp8Frame) bool {
	t.Helper()
	before := len(lp.w.pkts)
	lp.p.forward(lp.p.layer(f.layer), f.marshal(t), &lp.h)
	return len(lp.w.pkts) > before
}

// checkStream fails unless the recorded stream is one continuous stream:
// one SSRC, sequence numbers rising by one, timestamps never going back
// and VP8 picture IDs rising by one per new timestamp (15 bits).
func checkStream(t testing.TB, pkts []rtp.Packet) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		a, b := pkts[i-1], pkts[i]
		if b.SSRC != a.SSRC || b.PayloadType != a.PayloadType {
			t.Fatalf("packet %d: SSRC %d PT %d after SSRC %d PT %d", i, b.SSRC, b.PayloadType, a.SSRC, a.PayloadType)
		}
		if b.SequenceNumber != a.SequenceNumber+1 {
			t.Fatalf("packet %d: sequence number %d after %d; want %d", i, b.SequenceNumber, a.SequenceNumber, a.SequenceNumber+1)
		}
		if int32(b.Timestamp-a.Timestamp) < 0 {
			t.Fatalf("packet %d: timestamp %d after %d goes back", i, b.Timestamp, a.Timestamp)
		}
		pa, pb := parseVP8(a.Payload), parseVP8(b.Payload)
		want := pa.pic
		if b.Timestamp != a.Timestamp {
			want = (pa.pic + 1) & 0x7fff
		}
		if pb.pic != want {
			t.Fatalf("packet %d: picture ID %d after %d; want %d", i, pb.pic, pa.pic, want)
		}
		if b.Timestamp != a.Timestamp && pb.tl0 != pa.tl0+1 {
			t.Fatalf("packet %d: TL0PICIDX %d after %d; want %d", i, pb.tl0, pa.tl0, pa.tl0+1)
		}
	}
}

// TestMunging: a subscription forwards one layer and switches only at a
// keyframe of its target, keeping sequence numbers, timestamps and VP8
// picture IDs continuous, across wrap-arounds too.
func TestMunging(t *testing.T) {
	// Each layer's numbering starts where a case puts it; frames are
	// 3000 ticks (30 fps) apart, picture IDs and TL0PICIDX per layer.
	type start struct {
		seq uint16
		ts  uint32
		pic uint16
		tl0 uint8
	}
	for _, tc := range []struct {
		name   string
		layers [maxLayers]start
		// script: the max layer set before each of the 10 rounds; in a
		// round every layer sends a frame, a keyframe when key says.
		script []int
		key    func(round, layer int) bool
		// layerAt is the layer the subscriber is on after each round
		// (in a round that switches, the old layer's frame, sent
		// before the keyframe arrives, goes out too).
		layerAt []int
	}{
		{
			name:   "switch only at keyframe",
			layers: [maxLayers]start{{1000, 5000, 10, 3}, {20000, 777777, 300, 40}, {40000, 123, 32000, 200}},
			script: []int{2, 2, 0, 0, 0, 1, 1, 2, 2, 2},
			key: func(round, layer int) bool {
				return round == 1 || round == 4 && layer == 0 || round == 6 && layer == 1 || round == 9
			},
			layerAt: []int{-1, 2, 2, 2, 0, 0, 1, 1, 1, 2},
		},
		{
			name: "wrap-around",
			// Layer 0 wraps sequence numbers, timestamps and picture IDs
			// while forwarded; layer 2 starts just below the wrap.
			layers:  [maxLayers]start{{65533, 4294960000, 32766, 255}, {100, 100, 100, 100}, {65530, 4294967000, 32767, 254}},
			script:  []int{0, 0, 0, 0, 0, 2, 2, 2, 0, 0},
			key:     func(round, layer int) bool { return round == 0 || round == 6 || round == 8 },
			layerAt: []int{0, 0, 0, 0, 0, 0, 2, 2, 0, 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lp := newLayered(t)
			for round, max := range tc.script {
				lp.sub.SetMaxLayer(max)
				got, before := -1, lp.sub.CurrentLayer()
				for l, st := range tc.layers {
					f := vp8Frame{layer: l, seq: st.seq + uint16(round), ts: st.ts + uint32(round)*3000,
						pic: (st.pic + uint16(round)) & 0x7fff, tl0: st.tl0 + uint8(round), key: tc.key(round, l)}
					if lp.send(t, f) {
						if got >= 0 && got != before {
							t.Fatalf("round %d: layers %d and %d both sent after switching from %d", round, got, l, before)
						}
						got = l
					}
				}
				if got != tc.layerAt[round] {
					t.Fatalf("round %d (max layer %d): subscriber got layer %d; want %d", round, max, got, tc.layerAt[round])
				}
				if got >= 0 && lp.sub.CurrentLayer() != got {
					t.Fatalf("round %d: CurrentLayer() = %d; want %d", round, lp.sub.CurrentLayer(), got)
				}
			}
			checkStream(t, lp.w.pkts)
			for _, pkt := range lp.w.pkts {
				if pkt.SSRC != 4242 || pkt.PayloadType != 98 {
					t.Fatalf("packet SSRC %d PT %d; want the subscriber's 4242 and 98", pkt.SSRC, pkt.PayloadType)
				}
			}
		})
	}
}

// TestMungingTimestampGap: the first packet after a switch follows the
// last one sent by the time between their arrivals, whatever the new
// layer's own timestamps.
func TestMungingTimestampGap(t *testing.T) {
	lp := newLayered(t)
	lp.sub.SetMaxLayer(0)
	l0, l1 := lp.p.layer(0), lp.p.layer(1)
	pkt := func(l *layer, f vp8Frame, at time.Duration) {
		h := &rtp.Header{Version: 2, SequenceNumber: f.seq, Timestamp: f.ts}
		lp.p.engine.fanOut(*lp.p.subs.Load(), &inbound{layer: l, h: h, payload: f.payload(), at: at, key: -1})
	}
	pkt(l0, vp8Frame{layer: 0, seq: 10, ts: 1000, key: true}, time.Second)
	lp.sub.SetMaxLayer(1)
	pkt(l1, vp8Frame{layer: 1, seq: 5000, ts: 999999, key: true}, time.Second+100*time.Millisecond)
	if n := len(lp.w.pkts); n != 2 {
		t.Fatalf("packets sent = %d; want 2", n)
	}
	if got, want := lp.w.pkts[1].Timestamp-lp.w.pkts[0].Timestamp, uint32(9000); got != want {
		t.Errorf("timestamp step across a switch 100 ms later = %d; want %d (100 ms at 90 kHz)", got, want)
	}
}

// TestNACKAfterSwitch: after a switch, a NACK for a packet sent before it
// is answered from the old layer's history, and one for a packet after
// it from the new layer's, each rewritten as it was first sent; a packet
// of the new layer older than the switch is not forwarded.
func TestNACKAfterSwitch(t *testing.T) {
	lp := newLayered(t)
	lp.sub.SetMaxLayer(0)
	for i := range 5 {
		lp.send(t, vp8Frame{layer: 0, seq: 100 + uint16(i), ts: uint32(i) * 3000, pic: 50 + uint16(i), tl0: 7 + uint8(i), key: i == 0})
	}
	lp.sub.SetMaxLayer(2)
	for i := range 5 {
		lp.send(t, vp8Frame{layer: 2, seq: 9000 + uint16(i), ts: 500000 + uint32(i)*3000, pic: 4000 + uint16(i), tl0: 90 + uint8(i), key: i == 0})
	}
	if lp.send(t, vp8Frame{layer: 2, seq: 8999, ts: 497000, pic: 3999, tl0: 89}) {
		t.Fatal("a layer-2 packet from before the switch was forwarded")
	}
	sent := slicesClone(lp.w.pkts)
	if len(sent) != 10 {
		t.Fatalf("packets sent = %d; want 10", len(sent))
	}
	checkStream(t, sent)
	b := lp.sub.bound.Load()
	for _, i := range []int{2, 4, 5, 8} {
		want := sent[i]
		lp.w.pkts = lp.w.pkts[:0]
		if got := lp.sub.rtx.resend(want.SequenceNumber, b); got != resent {
			t.Fatalf("resend(%d) = %v; want resent", want.SequenceNumber, got)
		}
		got := lp.w.pkts[0]
		if got.SequenceNumber != want.SequenceNumber || got.Timestamp != want.Timestamp || got.SSRC != want.SSRC {
			t.Errorf("resent packet %d: seq %d ts %d ssrc %d; want seq %d ts %d ssrc %d", i,
				got.SequenceNumber, got.Timestamp, got.SSRC, want.SequenceNumber, want.Timestamp, want.SSRC)
		}
		if !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("resent packet %d payload %x; want %x (layer %d's)", i, got.Payload, want.Payload, want.Payload[6])
		}
	}
	if got := lp.sub.rtx.resend(sent[9].SequenceNumber+1, b); got != missing {
		t.Errorf("resend(a sequence number not sent yet) = %v; want missing", got)
	}
}

func slicesClone(p []rtp.Packet) []rtp.Packet { return append([]rtp.Packet(nil), p...) }

// countWriter counts the packets written and keeps the last one.
type countWriter struct {
	n    int
	last rtp.Packet
}

func (w *countWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n++
	w.last = rtp.Packet{Header: *h, Payload: append(w.last.Payload[:0], payload...)}
	return h.MarshalSize() + len(payload), nil
}

func (w *countWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestMungingLongRun: a stream that stays on one layer for more than
// 32768 packets (a plain track, or a simulcast layer after a switch) goes
// on being forwarded in full, and NACKs for its recent packets still map
// to the right source packet, sequence numbers having wrapped around.
func TestMungingLongRun(t *testing.T) {
	for _, layers := range []int{1, maxLayers} {
		t.Run(string(rune('0'+layers))+" layers", func(t *testing.T) {
			lp := newLayers(t, layers)
			w := &countWriter{}
			lp.sub.bound.Store(&binding{ssrc: 4242, pt: 98, w: w})
			lp.sub.SetMaxLayer(0)
			lp.send(t, vp8Frame{layer: 0, seq: 60000, ts: 1, pic: 1, key: true})
			if layers > 1 {
				lp.sub.SetMaxLayer(1)
				lp.send(t, vp8Frame{layer: 1, seq: 30000, ts: 1, pic: 1, key: true})
			}
			const run = 50000
			for i := range run {
				seq := uint16(60001 + i)
				if layers > 1 {
					seq = uint16(30001 + i)
				}
				lp.send(t, vp8Frame{layer: min(layers-1, 1), seq: seq, ts: uint32(i) * 3000, pic: uint16(i) & 0x7fff})
			}
			if want := min(layers, 2) + run; w.n != want {
				t.Fatalf("packets forwarded = %d; want %d", w.n, want)
			}
			last := w.last
			if got := lp.sub.rtx.resend(last.SequenceNumber, lp.sub.bound.Load()); got != resent {
				t.Fatalf("resend(newest, %d) = %v; want resent", last.SequenceNumber, got)
			}
			if !bytes.Equal(w.last.Payload, last.Payload) || w.last.SequenceNumber != last.SequenceNumber || w.last.Timestamp != last.Timestamp {
				t.Errorf("resent packet seq %d ts %d payload %x; want seq %d ts %d payload %x",
					w.last.SequenceNumber, w.last.Timestamp, w.last.Payload, last.SequenceNumber, last.Timestamp, last.Payload)
			}
		})
	}
}

// TestLayerStops: a layer the publisher stops sending while the others go
// on is left by the subscriptions after stoppedAfter, and taken again as
// soon as it sends; layers that send rarely but together (a still screen
// share) are never taken for stopped.
func TestLayerStops(t *testing.T) {
	lp := newLayered(t)
	p, s := lp.p, lp.sub
	at := time.Duration(0)
	frame := func(gap time.Duration, packets int, layers ...int) {
		at += gap
		for range packets {
			for _, l := range layers {
				p.track(p.layer(l), at)
			}
		}
	}
	// A still screen share: a burst on every layer each 3 s.
	for range 5 {
		frame(3*time.Second, 150, 0, 1, 2)
		if got := s.TargetLayer(); got != 2 {
			t.Fatalf("target with every layer sending rarely = %d; want 2", got)
		}
	}
	// Layer 2 stops; 0 and 1 go on at 30 frames a second.
	for range 75 {
		frame(33*time.Millisecond, 2, 0, 1)
		if at < 15*time.Second+stoppedAfter && s.TargetLayer() != 2 {
			t.Fatalf("target %d only %s after layer 2's last packet; want 2", s.TargetLayer(), at-15*time.Second)
		}
	}
	if got := s.TargetLayer(); got != 1 {
		t.Fatalf("target after layer 2 stopped for %s = %d; want 1", at-15*time.Second, got)
	}
	frame(33*time.Millisecond, 1, 2)
	if got := s.TargetLayer(); got != 2 {
		t.Fatalf("target once layer 2 sends again = %d; want 2", got)
	}
}
