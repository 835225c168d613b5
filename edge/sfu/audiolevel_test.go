package sfu

import (
	"testing"

	"github.com/pion/rtp"
)

// levelPacket is an Opus packet carrying level (and the voice bit) as
// extension id, one-byte or two-byte form, after a transport-cc
// extension as browsers send it, with csrcs contributing sources.
func levelPacket(tb testing.TB, id, level uint8, twoByte bool, csrcs int) []byte {
	tb.Helper()
	h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 7, Timestamp: 960, SSRC: 42,
		CSRC: make([]uint32, csrcs)}
	if twoByte {
		h.Extension, h.ExtensionProfile = true, rtp.ExtensionProfileTwoByte
	}
	if err := h.SetExtension(3, []byte{0, 1}); err != nil {
		tb.Fatal(err)
	}
	if err := h.SetExtension(id, []byte{0x80 | level}); err != nil {
		tb.Fatal(err)
	}
	raw, err := (&rtp.Packet{Header: h, Payload: make([]byte, 80)}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func TestAudioLevel(t *testing.T) {
	tests := []struct {
		name   string
		pkt    []byte
		id     uint8
		want   uint8
		wantOK bool
	}{
		{"one-byte", levelPacket(t, 1, 30, false, 0), 1, 30, true},
		{"one-byte after csrcs", levelPacket(t, 5, 127, false, 3), 5, 127, true},
		{"two-byte", levelPacket(t, 1, 0, true, 0), 1, 0, true},
		{"other id", levelPacket(t, 1, 30, false, 0), 2, 0, false},
		{"id 0 is never negotiated", levelPacket(t, 1, 30, false, 0), 0, 0, false},
		{"no extension", make([]byte, 100), 1, 0, false},
		{"truncated block", levelPacket(t, 1, 30, false, 0)[:16], 1, 0, false},
		{"short", []byte{0x90}, 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := audioLevel(tt.pkt, tt.id); got != tt.want || ok != tt.wantOK {
				t.Errorf("audioLevel(pkt, %d) = %d, %v; want %d, %v", tt.id, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// FuzzAudioLevel: audioLevel never panics and agrees with Pion's parser
// on every packet Pion accepts.
func FuzzAudioLevel(f *testing.F) {
	f.Add(levelPacket(f, 1, 30, false, 0), uint8(1))
	f.Add(levelPacket(f, 9, 3, true, 2), uint8(9))
	f.Fuzz(func(t *testing.T, pkt []byte, id uint8) {
		got, ok := audioLevel(pkt, id)
		var h rtp.Header
		if _, err := h.Unmarshal(pkt); err != nil || id == 0 || (h.ExtensionProfile == rtp.ExtensionProfileOneByte && id > 14) {
			return
		}
		if ext := h.GetExtension(id); len(ext) > 0 {
			if !ok || got != ext[0]&0x7f {
				t.Fatalf("audioLevel = %d, %v; Pion reads %d", got, ok, ext[0]&0x7f)
			}
		}
	})
}

func TestTakeAudioLevel(t *testing.T) {
	var p Publication
	if got := p.TakeAudioLevel(); got.Packets != 0 {
		t.Fatalf("TakeAudioLevel() on nothing = %+v; want no packets", got)
	}
	for range 3 {
		p.levels.add(0) // full scale
	}
	p.levels.add(127) // silence
	got := p.TakeAudioLevel()
	if got.Packets != 4 || got.Active != 0.75 || got.Level < 0.74 || got.Level > 0.76 {
		t.Errorf("TakeAudioLevel() = %+v; want 4 packets, 0.75 active, level 0.75", got)
	}
	if got := p.TakeAudioLevel(); got.Packets != 0 {
		t.Errorf("second TakeAudioLevel() = %+v; want a new, empty window", got)
	}
}

// TestAudioLevelAllocs: reading the level costs the forwarding path no
// allocation.
func TestAudioLevelAllocs(t *testing.T) {
	pkt := levelPacket(t, 1, 30, false, 0)
	var p Publication
	if n := testing.AllocsPerRun(100, func() {
		if l, ok := audioLevel(pkt, 1); ok {
			p.levels.add(l)
		}
	}); n != 0 {
		t.Errorf("audioLevel and add: %v allocations per packet; want 0", n)
	}
}

// BenchmarkAudioLevel is the per-packet cost active speakers add to the
// forwarding of an audio packet: the extension read and the window add.
func BenchmarkAudioLevel(b *testing.B) {
	pkt := levelPacket(b, 1, 30, false, 0)
	var p Publication
	b.ReportAllocs()
	for b.Loop() {
		if l, ok := audioLevel(pkt, 1); ok {
			p.levels.add(l)
		}
	}
}
