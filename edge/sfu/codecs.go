package sfu

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// videoFeedback is what every video codec negotiates: NACK so lost packets
// are repaired (we ask publishers, we answer subscribers), PLI and FIR so a
// decoder can ask for a keyframe, and transport-cc so publishers run their
// send-side bandwidth estimation on our feedback.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	{Type: webrtc.TypeRTCPFBTransportCC},
}

// audioFeedback: Opus repairs loss with in-band FEC, not retransmission, so
// audio only negotiates transport-cc.
var audioFeedback = []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}

// codecs is every codec the engine negotiates, in order of preference
// (VP8 first: every browser decodes it, and it needs no profile matching).
// Payload types follow Chrome's numbering so offers from browsers map
// without surprises.
func codecs() []webrtc.RTPCodecParameters {
	video := func(pt webrtc.PayloadType, mime, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{PayloadType: pt, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFeedback,
		}}
	}
	return []webrtc.RTPCodecParameters{
		{PayloadType: 111, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: audioFeedback,
		}},
		video(96, webrtc.MimeTypeVP8, ""),
		video(98, webrtc.MimeTypeVP9, "profile-id=0"),
		video(100, webrtc.MimeTypeVP9, "profile-id=2"),
		video(102, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
		video(106, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
		video(108, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
		video(112, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f"),
	}
}

// newMediaEngine registers our codecs and the transport-cc header
// extension (needed for TWCC feedback), and for publishers (simulcast)
// the mid, rid and repaired-rid extensions that name a simulcast
// packet's layer. No header extension is forwarded: forwarded packets
// carry none (see parseRTP), so subscribers negotiate only transport-cc.
func newMediaEngine(simulcast bool) (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range codecs() {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			return nil, fmt.Errorf("sfu: register codec %s: %w", c.MimeType, err)
		}
	}
	ext := webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := m.RegisterHeaderExtension(ext, kind); err != nil {
			return nil, fmt.Errorf("sfu: register transport-cc extension: %w", err)
		}
	}
	if simulcast {
		if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
			return nil, fmt.Errorf("sfu: register simulcast extensions: %w", err)
		}
	}
	return m, nil
}

// matchCodec picks, among the codecs negotiated with a subscriber, the one
// that carries the publication's codec unchanged: the same MIME type and,
// for H.264, the same packetization mode and profile (a decoder cannot take
// another profile's bitstream). VP9 matches on profile-id the same way.
func matchCodec(want webrtc.RTPCodecCapability, have []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	for _, c := range have {
		if strings.EqualFold(c.MimeType, want.MimeType) && fmtpCompatible(want, c.RTPCodecCapability) {
			return c, true
		}
	}
	return webrtc.RTPCodecParameters{}, false
}

// fmtpCompatible reports whether b can carry a's bitstream.
func fmtpCompatible(a, b webrtc.RTPCodecCapability) bool {
	switch strings.ToLower(a.MimeType) {
	case strings.ToLower(webrtc.MimeTypeH264):
		pa, pb := fmtpParams(a.SDPFmtpLine), fmtpParams(b.SDPFmtpLine)
		return orDefault(pa["packetization-mode"], "0") == orDefault(pb["packetization-mode"], "0") &&
			h264Profile(pa["profile-level-id"]) == h264Profile(pb["profile-level-id"])
	case strings.ToLower(webrtc.MimeTypeVP9):
		pa, pb := fmtpParams(a.SDPFmtpLine), fmtpParams(b.SDPFmtpLine)
		return orDefault(pa["profile-id"], "0") == orDefault(pb["profile-id"], "0")
	}
	return true
}

// fmtpParams parses "a=1;b=2" into a map with lower-case keys.
func fmtpParams(line string) map[string]string {
	m := map[string]string{}
	for part := range strings.SplitSeq(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if k != "" {
			m[strings.ToLower(k)] = strings.ToLower(v)
		}
	}
	return m
}

// h264Profile returns the profile_idc of a profile-level-id (its first two
// hex digits). Level and constraint flags may differ: browsers answer
// 42001f and 42e01f interchangeably and decode each other's baseline.
func h264Profile(profileLevelID string) string {
	if len(profileLevelID) < 2 {
		return "42" // RFC 6184 default: baseline
	}
	return profileLevelID[:2]
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
