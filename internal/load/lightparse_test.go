package load

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
)

// TestParseSRTPHeader reads what a light receiver needs from headers Pion
// marshals, and leaves STUN, DTLS and RTCP alone.
func TestParseSRTPHeader(t *testing.T) {
	tcc, _ := (&rtp.TransportCCExtension{TransportSequence: 4242}).Marshal()
	rtpWith := func(oneByte, padding bool) []byte {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, SSRC: 0xdeadbeef, Padding: padding}
		if !oneByte {
			h.ExtensionProfile = 0x1000
		}
		_ = h.SetExtension(2, []byte{9})
		_ = h.SetExtension(3, tcc)
		b, _ := h.Marshal()
		return append(b, make([]byte, 20)...)
	}
	tests := []struct {
		name    string
		b       []byte
		ok, tcc bool
		padding bool
	}{
		{"one-byte extensions", rtpWith(true, false), true, true, false},
		{"two-byte extensions", rtpWith(false, false), true, true, false},
		{"padding probe", rtpWith(true, true), true, true, true},
		{"rtcp sender report", []byte{0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0}, false, false, false},
		{"stun", []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0}, false, false, false},
		{"dtls", []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, false, false},
		{"short", []byte{0x80, 96, 0}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := parseSRTPHeader(tt.b, 3)
			if ok != tt.ok {
				t.Fatalf("parseSRTPHeader ok = %v; want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if h.ssrc != 0xdeadbeef || h.seq != 7 || h.hasTCC != tt.tcc || (tt.tcc && h.tcc != 4242) || h.padding != tt.padding {
				t.Errorf("parseSRTPHeader = %+v; want ssrc deadbeef, seq 7, tcc 4242 %v, padding %v", h, tt.tcc, tt.padding)
			}
		})
	}
}

// TestChannelData unwraps the datagram of a ChannelData message, and
// leaves alone what is not one or does not hold its length.
func TestChannelData(t *testing.T) {
	srtp := []byte{0x80, 96, 0, 7, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2}
	wrapped := append([]byte{0x40, 0x01, 0, byte(len(srtp))}, srtp...)
	tests := []struct {
		name string
		b    []byte
		want []byte
	}{
		{"channel data", wrapped, srtp},
		{"channel data padded to 4 bytes", append(wrapped, 0, 0), srtp},
		{"highest channel", append([]byte{0x4f, 0xff, 0, byte(len(srtp))}, srtp...), srtp},
		{"length beyond the datagram", wrapped[:len(wrapped)-1], wrapped[:len(wrapped)-1]},
		{"srtp", srtp, srtp},
		{"stun", []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}},
		{"dtls", []byte{22, 0xfe, 0xfd, 0, 0}, []byte{22, 0xfe, 0xfd, 0, 0}},
		{"short", []byte{0x40, 1, 0}, []byte{0x40, 1, 0}},
	}
	for _, tt := range tests {
		if got := channelData(tt.b); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: channelData(% x) = % x; want % x", tt.name, tt.b, got, tt.want)
		}
	}
}

func FuzzParseSRTPHeader(f *testing.F) {
	f.Add([]byte{0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 0x31, 0, 5, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseSRTPHeader(b, 3)
	})
}

// TestLightStreamAdvance maps RTP sequence numbers onto the source's
// across padding probes, reordering and the 16-bit wrap.
func TestLightStreamAdvance(t *testing.T) {
	src := newSource(1, kindVideo)
	st := &lightStream{src: src, lastRTP: 65534, lastSrc: 100}
	steps := []struct {
		seq     uint16
		padding bool
		want    uint32
		media   bool
	}{
		{65535, false, 101, true},
		{0, true, 0, false}, // a probe takes 0
		{1, true, 0, false},
		{3, false, 103, true}, // 2 is late
		{2, false, 102, true}, // and maps back
		{4, false, 104, true},
	}
	for _, s := range steps {
		_, got, media := st.advance(srtpHeader{seq: s.seq, padding: s.padding})
		if media != s.media || (media && got != s.want) {
			t.Errorf("advance(seq %d, padding %v) = %d, %v; want %d, %v", s.seq, s.padding, got, media, s.want, s.media)
		}
	}
}

func TestTransportCCID(t *testing.T) {
	sdp := "v=0\r\na=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:5/recvonly http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
	if got := transportCCID(sdp); got != 5 {
		t.Errorf("transportCCID = %d; want 5", got)
	}
	if got := transportCCID("v=0\r\n"); got != 0 {
		t.Errorf("transportCCID(no extmap) = %d; want 0", got)
	}
}

func TestSpread(t *testing.T) {
	tests := []struct {
		m, n int
		want []int
	}{
		{10, 1, []int{5}},
		{10, 2, []int{0, 9}},
		{10, 3, []int{0, 4, 9}},
		{3, 5, []int{0, 1, 2}},
		{4, 0, nil},
	}
	for _, tt := range tests {
		got := spread(tt.m, tt.n)
		if len(got) != len(tt.want) {
			t.Errorf("spread(%d, %d) = %v; want %v", tt.m, tt.n, got, tt.want)
			continue
		}
		for _, i := range tt.want {
			if !got[i] {
				t.Errorf("spread(%d, %d) = %v; want %v", tt.m, tt.n, got, tt.want)
			}
		}
	}
}
