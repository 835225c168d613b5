package sfu

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// marshalTWCC is fb's bytes, as a subscriber sends them.
func marshalTWCC(fb *rtcp.TransportLayerCC) []byte {
	b, err := fb.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// feedbackPacket is one packet a feedback message covers.
type feedbackPacket struct {
	seq      uint16
	received bool
	arrived  time.Duration
}

// pionFeedbackPackets reads fb the way pion/rtcp's structures say it:
// the reference against which eachFeedbackPacket is checked.
func pionFeedbackPackets(fb *rtcp.TransportLayerCC) []feedbackPacket {
	var out []feedbackPacket
	arrived := time.Duration(fb.ReferenceTime) * 64 * time.Millisecond
	seq, left, deltas := fb.BaseSequenceNumber, int(fb.PacketStatusCount), fb.RecvDeltas
	for _, chunk := range fb.PacketChunks {
		var statuses []uint16
		switch c := chunk.(type) {
		case *rtcp.RunLengthChunk:
			for range c.RunLength {
				statuses = append(statuses, c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			statuses = c.SymbolList
		}
		for _, s := range statuses {
			if left == 0 {
				return out
			}
			left--
			received := s != rtcp.TypeTCCPacketNotReceived
			if received {
				arrived += time.Duration(deltas[0].Delta) * time.Microsecond
				deltas = deltas[1:]
			}
			out = append(out, feedbackPacket{seq, received, arrived})
			seq++
		}
	}
	return out
}

// TestFeedbackParseMatchesPion: for feedback built by pion's recorder (what
// browsers' and our clients' feedback looks like) over random arrivals,
// losses, gaps, reordering and sequence wrap, eachFeedbackPacket reads
// exactly what pion/rtcp's parse of the same bytes says.
func TestFeedbackParseMatchesPion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		rec := twcc.NewRecorder(1)
		seq := uint16(rng.IntN(1 << 16))
		at := int64(rng.IntN(1 << 30))
		for range 1 + rng.IntN(400) {
			seq += uint16(1 + rng.IntN(3)*rng.IntN(2)) // some gaps: losses
			switch rng.IntN(10) {
			case 0:
				at += int64(rng.IntN(200_000)) // a large delta
			case 1:
				at -= int64(rng.IntN(5_000)) // arrived before the one before: negative
			default:
				at += int64(rng.IntN(2_000))
			}
			rec.Record(7, seq, at)
		}
		for _, p := range rec.BuildFeedbackPacket() {
			fb, ok := p.(*rtcp.TransportLayerCC)
			if !ok {
				continue
			}
			raw := marshalTWCC(fb)
			var parsed rtcp.TransportLayerCC
			if err := parsed.Unmarshal(raw); err != nil {
				t.Fatalf("round %d: pion cannot parse its own feedback: %v", round, err)
			}
			want := pionFeedbackPackets(&parsed)
			var got []feedbackPacket
			eachFeedbackPacket(raw, func(seq uint16, received bool, arrived time.Duration) {
				got = append(got, feedbackPacket{seq, received, arrived})
			})
			if len(got) != len(want) {
				t.Fatalf("round %d: %d packets; pion reads %d", round, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("round %d, packet %d: %+v; pion reads %+v", round, i, got[i], want[i])
				}
			}
		}
	}
}

// TestFeedbackParseFaults: a truncated or malformed message yields the
// packets before the fault and nothing made up.
func TestFeedbackParseFaults(t *testing.T) {
	fb := &rtcp.TransportLayerCC{
		SenderSSRC: 1, MediaSSRC: 2, BaseSequenceNumber: 100, PacketStatusCount: 3, ReferenceTime: 10, FbPktCount: 1,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit,
			SymbolList: []uint16{rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketNotReceived, rtcp.TypeTCCPacketReceivedLargeDelta,
				0, 0, 0, 0}}},
		RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1000}, {Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: -2000}},
	}
	raw := marshalTWCC(fb)
	count := func(b []byte) (n int) {
		eachFeedbackPacket(b, func(uint16, bool, time.Duration) { n++ })
		return n
	}
	if n := count(raw); n != 3 {
		t.Fatalf("whole message: %d packets; want 3", n)
	}
	// The large delta's second byte cut off: the two before it stand.
	if n := count(raw[:twccFixedLen+2+1+1]); n != 2 {
		t.Errorf("large delta cut: %d packets; want 2", n)
	}
	if n := count(raw[:twccFixedLen+1]); n != 0 {
		t.Errorf("chunk cut: %d packets; want 0", n)
	}
	if n := count(raw[:twccFixedLen-1]); n != 0 {
		t.Errorf("header cut: %d packets; want 0", n)
	}
	reserved := append([]byte(nil), raw...)
	reserved[twccFixedLen] |= 0x0c // the second status becomes 3, reserved
	if n := count(reserved); n != 1 {
		t.Errorf("reserved status: %d packets; want 1", n)
	}
}

// TestFeedbackResultsDoesNotAllocate: reading a feedback message into
// results costs no allocation once out has room.
func TestFeedbackResultsDoesNotAllocate(t *testing.T) {
	s := newTWCCSender()
	for range 300 {
		s.stamp(1200, false)
	}
	rec := twcc.NewRecorder(1)
	for i := range 200 {
		rec.Record(7, uint16(i), int64(i)*1000+int64(i%7)*3000)
	}
	var raw []byte
	for _, p := range rec.BuildFeedbackPacket() {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			raw = marshalTWCC(fb)
		}
	}
	out := make([]packetResult, 0, 256)
	if got := testing.AllocsPerRun(100, func() { out = s.results(raw, out[:0]) }); got != 0 {
		t.Errorf("allocations per feedback = %v; want 0", got)
	}
}
