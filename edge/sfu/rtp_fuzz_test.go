package sfu

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
)

// FuzzParseRTP feeds parseRTP what a publisher controls: the whole packet.
// It must never panic, the payload must lie inside the packet, and what
// we would send (our header, the payload, the padding) must parse back to
// the same header fields and payload.
func FuzzParseRTP(f *testing.F) {
	plain := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, Timestamp: 9, SSRC: 1}, Payload: []byte("frame")}
	ext := plain
	_ = ext.SetExtension(1, []byte{1, 2})
	padded := plain
	padded.Padding, padded.PaddingSize = true, 4
	for _, p := range []rtp.Packet{plain, ext, padded} {
		raw, err := p.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{0xa0, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xff}) // padding longer than the packet
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var h rtp.Header
		payload, ok := parseRTP(pkt, &h)
		if !ok {
			return
		}
		if len(payload)+int(h.PaddingSize) > len(pkt) {
			t.Fatalf("payload %d + padding %d bytes from a %d-byte packet", len(payload), h.PaddingSize, len(pkt))
		}
		out, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		if err != nil {
			t.Fatalf("marshal of a parsed packet: %v", err)
		}
		var back rtp.Header
		again, ok := parseRTP(out, &back)
		if !ok {
			t.Fatalf("parseRTP(our own packet %x) failed", out)
		}
		if !bytes.Equal(again, payload) || back.SequenceNumber != h.SequenceNumber ||
			back.Timestamp != h.Timestamp || back.Marker != h.Marker || back.PaddingSize != h.PaddingSize {
			t.Fatalf("round trip changed the packet: %+v %x -> %+v %x", h, payload, back, again)
		}
	})
}
