package sfu

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// TestPaddingKeepsStream: probe padding sent between media packets takes
// the next sequence numbers, the media after it continues the sequence,
// every packet carries the next transport-wide sequence number, and a
// NACK for padding is a miss while one for media on either side of it
// resends the right packet.
func TestPaddingKeepsStream(t *testing.T) {
	lp := newLayered(t)
	lp.sub.conn = &SubscriberConn{bw: newBandwidth(lp.p.engine.metrics, nil)}
	const extID = 3
	lp.sub.bound.Store(&binding{ssrc: 4242, pt: 98, twcc: extID, w: lp.w})
	lp.sub.SetMaxLayer(0)
	for i := range 3 {
		lp.send(t, vp8Frame{layer: 0, seq: 100 + uint16(i), ts: uint32(i) * 3000, pic: 50 + uint16(i), tl0: 7 + uint8(i), key: i == 0})
	}
	if n := lp.sub.sendPadding(4); n == 0 {
		t.Fatal("sendPadding(4) sent nothing")
	}
	for i := 3; i < 5; i++ {
		lp.send(t, vp8Frame{layer: 0, seq: 100 + uint16(i), ts: uint32(i) * 3000, pic: 50 + uint16(i), tl0: 7 + uint8(i)})
	}
	sent := slicesClone(lp.w.pkts)
	if len(sent) != 9 {
		t.Fatalf("packets sent = %d; want 3 media, 4 padding, 2 media", len(sent))
	}
	for i, p := range sent {
		padding := i >= 3 && i < 7
		if p.Padding != padding || padding && (len(p.Payload) != 0 || p.Header.PaddingSize != paddingSize) {
			t.Errorf("packet %d: padding %v (%d bytes, payload %d); want padding %v", i, p.Padding, p.Header.PaddingSize, len(p.Payload), padding)
		}
		if i > 0 && p.SequenceNumber != sent[i-1].SequenceNumber+1 {
			t.Errorf("packet %d: sequence number %d after %d", i, p.SequenceNumber, sent[i-1].SequenceNumber)
		}
		ext := p.GetExtension(extID)
		if len(ext) != 2 || binary.BigEndian.Uint16(ext) != uint16(i) {
			t.Errorf("packet %d: transport-wide sequence extension %x; want %d", i, ext, i)
		}
	}
	b := lp.sub.bound.Load()
	if got := lp.sub.rtx.resend(sent[4].SequenceNumber, b); got != missing {
		t.Errorf("resend(padding) = %v; want missing", got)
	}
	for _, i := range []int{1, 7, 8} {
		lp.w.pkts = lp.w.pkts[:0]
		if got := lp.sub.rtx.resend(sent[i].SequenceNumber, b); got != resent {
			t.Fatalf("resend(packet %d) = %v; want resent", i, got)
		}
		if got := lp.w.pkts[0]; !bytes.Equal(got.Payload, sent[i].Payload) || got.SequenceNumber != sent[i].SequenceNumber {
			t.Errorf("resent packet %d: seq %d payload %x; want seq %d payload %x", i, got.SequenceNumber, got.Payload, sent[i].SequenceNumber, sent[i].Payload)
		}
	}
}

// TestProbeRateIsNoMoreThanSent: a probe whose packets arrive bunched (a
// bottleneck's token bucket passed them at line rate) measures the rate
// they were sent at, not the bunch's.
func TestProbeRateIsNoMoreThanSent(t *testing.T) {
	p := newProber(newTWCCSender())
	e := newEstimator()
	e.estimate = 340e3
	p.active, p.until, p.target, p.base = true, probeDuration, 510e3, 340e3
	// 1000-byte packets every 16 ms (500 kbit/s) for 300 ms, arriving
	// every 9 ms (890 kbit/s).
	var rs []packetResult
	for i := range 19 {
		rs = append(rs, packetResult{sent: time.Duration(i) * 16 * time.Millisecond,
			arrived: time.Duration(20+i*9) * time.Millisecond, size: 1000, received: true})
	}
	rate, ok := p.feedback(probeDuration, rs, e)
	if !ok {
		t.Fatal("probe gave no rate")
	}
	if sent := 19 * 1000 * 8 / 0.288; rate > sent*1.01 {
		t.Errorf("probe rate = %.0f; want at most the %.0f bit/s it was sent at", rate, sent)
	}
}
