package sfu

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestKeyframeDetection: where a subscription may start or switch, per
// codec, from real packet layouts.
func TestKeyframeDetection(t *testing.T) {
	video := webrtc.RTPCodecTypeVideo
	for _, tc := range []struct {
		name    string
		kind    webrtc.RTPCodecType
		mime    string
		payload []byte
		want    bool
	}{
		// VP8: descriptor (S bit, partition 0), then the VP8 header's P bit.
		{"vp8 keyframe, short descriptor", video, webrtc.MimeTypeVP8, []byte{0x10, 0x00, 0x01}, true},
		{"vp8 keyframe, 15-bit picture ID and TL0PICIDX", video, webrtc.MimeTypeVP8, []byte{0x90, 0xc0, 0x81, 0x02, 0x05, 0x00, 0x9d}, true},
		{"vp8 keyframe, 7-bit picture ID, TID byte", video, webrtc.MimeTypeVP8, []byte{0x90, 0xa0, 0x12, 0x20, 0x00}, true},
		{"vp8 delta frame", video, webrtc.MimeTypeVP8, []byte{0x90, 0xc0, 0x81, 0x02, 0x05, 0x01}, false},
		{"vp8 keyframe's later packet (no S bit)", video, webrtc.MimeTypeVP8, []byte{0x80, 0xc0, 0x81, 0x02, 0x05, 0x00}, false},
		{"vp8 second partition", video, webrtc.MimeTypeVP8, []byte{0x11, 0x00}, false},
		{"vp8 descriptor cut short", video, webrtc.MimeTypeVP8, []byte{0x90, 0xc0, 0x81}, false},
		{"vp8 empty", video, webrtc.MimeTypeVP8, nil, false},
		// H.264 (RFC 6184): single NAL, STAP-A, FU-A.
		{"h264 IDR", video, webrtc.MimeTypeH264, []byte{0x65, 0x88}, true},
		{"h264 SPS", video, webrtc.MimeTypeH264, []byte{0x67, 0x42}, true},
		{"h264 non-IDR slice", video, webrtc.MimeTypeH264, []byte{0x41, 0x9a}, false},
		{"h264 STAP-A with SPS and PPS", video, webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 STAP-A with SEI only", video, webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x02, 0x06, 0x05}, false},
		{"h264 STAP-A with a bad length", video, webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 FU-A start of IDR", video, webrtc.MimeTypeH264, []byte{0x7c, 0x85, 0x88}, true},
		{"h264 FU-A middle of IDR", video, webrtc.MimeTypeH264, []byte{0x7c, 0x05, 0x88}, false},
		{"h264 FU-A start of non-IDR", video, webrtc.MimeTypeH264, []byte{0x7c, 0x81, 0x9a}, false},
		// VP9: P bit clear, B bit set.
		{"vp9 keyframe start", video, webrtc.MimeTypeVP9, []byte{0x88, 0x00}, true},
		{"vp9 inter frame", video, webrtc.MimeTypeVP9, []byte{0xc8, 0x00}, false},
		// Audio and codecs not parsed start anywhere.
		{"opus", webrtc.RTPCodecTypeAudio, webrtc.MimeTypeOpus, []byte{0xfc}, true},
		{"av1", video, webrtc.MimeTypeAV1, []byte{0x00}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := keyframeDetector(tc.kind, tc.mime)(tc.payload); got != tc.want {
				t.Errorf("keyframe(%x) = %v; want %v", tc.payload, got, tc.want)
			}
		})
	}
}

// TestVP8DescriptorRewrite: picture IDs and TL0PICIDX are written back in
// the width they came in, and nothing else in the payload changes.
func TestVP8DescriptorRewrite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		payload   []byte
		pic       uint16
		tl0       uint8
		want      []byte
		wantWidth uint16
	}{
		{"15-bit", []byte{0x90, 0xc0, 0x81, 0x02, 0x05, 0x00, 0xaa}, 0x7ffe, 9, []byte{0x90, 0xc0, 0xff, 0xfe, 0x09, 0x00, 0xaa}, 0x7fff},
		{"7-bit", []byte{0x90, 0xc0, 0x12, 0x05, 0x00, 0xaa}, 0x7f, 200, []byte{0x90, 0xc0, 0x7f, 0xc8, 0x00, 0xaa}, 0x7f},
		{"no TL0PICIDX", []byte{0x90, 0x80, 0x81, 0x02, 0x00}, 3, 1, []byte{0x90, 0x80, 0x80, 0x03, 0x00}, 0x7fff},
		{"no picture ID", []byte{0x90, 0x40, 0x05, 0x00}, 3, 6, []byte{0x90, 0x40, 0x06, 0x00}, 0x7f},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := parseVP8(tc.payload)
			if d.invalid {
				t.Fatalf("parseVP8(%x) invalid", tc.payload)
			}
			if d.picMask() != tc.wantWidth {
				t.Errorf("picture ID mask = %#x; want %#x", d.picMask(), tc.wantWidth)
			}
			b := append([]byte(nil), tc.payload...)
			d.write(b, tc.pic, tc.tl0)
			if string(b) != string(tc.want) {
				t.Errorf("rewritten %x; want %x", b, tc.want)
			}
			if again := parseVP8(b); d.picAt != 0 && again.pic != tc.pic {
				t.Errorf("picture ID read back %d; want %d", again.pic, tc.pic)
			}
		})
	}
}
