package sfu

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestMatchCodec(t *testing.T) {
	h264 := func(pt webrtc.PayloadType, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{PayloadType: pt, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtp}}
	}
	vp9 := func(pt webrtc.PayloadType, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{PayloadType: pt, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: fmtp}}
	}
	vp8 := webrtc.RTPCodecParameters{PayloadType: 96, RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: "video/vp8", ClockRate: 90000}}
	subscriber := []webrtc.RTPCodecParameters{
		vp8,
		h264(102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
		h264(108, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
		h264(112, "packetization-mode=1;profile-level-id=64001f"),
		vp9(98, "profile-id=0"),
		vp9(100, "profile-id=2"),
	}
	for _, tc := range []struct {
		name   string
		want   webrtc.RTPCodecCapability
		wantPT webrtc.PayloadType // 0: no match
	}{
		{"vp8 ignores case", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, 96},
		{"h264 baseline any level and constraints", h264(0, "packetization-mode=1;profile-level-id=42e034").RTPCodecCapability, 102},
		{"h264 packetization mode 0", h264(0, "profile-level-id=42e01f").RTPCodecCapability, 108},
		{"h264 high", h264(0, "packetization-mode=1;profile-level-id=640032").RTPCodecCapability, 112},
		{"h264 main is not offered", h264(0, "packetization-mode=1;profile-level-id=4d001f").RTPCodecCapability, 0},
		{"vp9 profile 2", vp9(0, "profile-id=2").RTPCodecCapability, 100},
		{"vp9 without fmtp is profile 0", vp9(0, "").RTPCodecCapability, 98},
		{"av1 is not offered", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := matchCodec(tc.want, subscriber)
			if tc.wantPT == 0 {
				if ok {
					t.Fatalf("matchCodec(%s %q) = PT %d; want no match", tc.want.MimeType, tc.want.SDPFmtpLine, got.PayloadType)
				}
				return
			}
			if !ok || got.PayloadType != tc.wantPT {
				t.Fatalf("matchCodec(%s %q) = PT %d, %v; want PT %d", tc.want.MimeType, tc.want.SDPFmtpLine, got.PayloadType, ok, tc.wantPT)
			}
		})
	}
}
