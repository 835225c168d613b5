package sfu

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// keyframeDetector returns the test of whether a payload of the codec
// starts a keyframe: where a subscription may start, resume, or switch
// layer. Audio and codecs we cannot parse start anywhere.
func keyframeDetector(kind webrtc.RTPCodecType, mime string) func([]byte) bool {
	if kind != webrtc.RTPCodecTypeVideo {
		return anyPacket
	}
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeVP8):
		return vp8Keyframe
	case strings.ToLower(webrtc.MimeTypeH264):
		return h264Keyframe
	case strings.ToLower(webrtc.MimeTypeVP9):
		return vp9Keyframe
	}
	return anyPacket
}

func anyPacket([]byte) bool { return true }

// vp8Descriptor is what we read and rewrite of a VP8 payload descriptor
// (RFC 7741, section 4.2). Offsets are byte positions in the payload; 0
// means the field is absent (the first byte is never one of them).
type vp8Descriptor struct {
	picAt   int    // the picture ID's first byte
	wide    bool   // 15-bit picture ID (M bit), else 7-bit
	pic     uint16 // the picture ID
	tl0At   int    // TL0PICIDX
	tl0     uint8
	size    int  // bytes of the descriptor: the VP8 payload follows
	start   bool // S bit with partition index 0: a frame's first packet
	invalid bool
}

// parseVP8 reads the descriptor at the start of payload.
func parseVP8(payload []byte) vp8Descriptor {
	var d vp8Descriptor
	if len(payload) < 1 {
		return vp8Descriptor{invalid: true}
	}
	b := payload[0]
	d.start = b&0x10 != 0 && b&0x07 == 0
	i := 1
	if b&0x80 != 0 { // X: extension byte follows
		if len(payload) < 2 {
			return vp8Descriptor{invalid: true}
		}
		x := payload[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID
			if len(payload) <= i {
				return vp8Descriptor{invalid: true}
			}
			d.picAt = i
			if payload[i]&0x80 != 0 {
				if len(payload) <= i+1 {
					return vp8Descriptor{invalid: true}
				}
				d.wide, d.pic = true, uint16(payload[i]&0x7f)<<8|uint16(payload[i+1])
				i += 2
			} else {
				d.pic = uint16(payload[i])
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			if len(payload) <= i {
				return vp8Descriptor{invalid: true}
			}
			d.tl0At, d.tl0 = i, payload[i]
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX byte
			i++
		}
	}
	if i > len(payload) {
		return vp8Descriptor{invalid: true}
	}
	d.size = i
	return d
}

// picMask is the picture ID's range: 7 or 15 bits.
func (d *vp8Descriptor) picMask() uint16 {
	if d.wide {
		return 0x7fff
	}
	return 0x7f
}

// write puts picture ID pic and TL0PICIDX tl0 into payload, which d was
// parsed from, where the descriptor has them.
func (d *vp8Descriptor) write(payload []byte, pic uint16, tl0 uint8) {
	if d.picAt != 0 {
		if d.wide {
			payload[d.picAt] = 0x80 | byte(pic>>8)&0x7f
			payload[d.picAt+1] = byte(pic)
		} else {
			payload[d.picAt] = byte(pic) & 0x7f
		}
	}
	if d.tl0At != 0 {
		payload[d.tl0At] = tl0
	}
}

// vp8Keyframe: the first packet of a frame whose VP8 header's P bit
// (inverse keyframe flag, RFC 6386 section 9.1) is clear.
func vp8Keyframe(payload []byte) bool {
	d := parseVP8(payload)
	return !d.invalid && d.start && d.size < len(payload) && payload[d.size]&0x01 == 0
}

// H.264 NAL unit types (RFC 6184) that matter here.
const (
	naluIDR   = 5
	naluSPS   = 7
	naluSTAPA = 24
	naluFUA   = 28
)

// h264Keyframe: a packet carrying an IDR slice or an SPS, alone, in a
// STAP-A aggregate, or as the first fragment of an FU-A.
func h264Keyframe(payload []byte) bool {
	if len(payload) < 1 {
		return false
	}
	switch t := payload[0] & 0x1f; t {
	case naluIDR, naluSPS:
		return true
	case naluSTAPA:
		for i := 1; i+2 < len(payload); {
			n := int(payload[i])<<8 | int(payload[i+1])
			if n == 0 || i+2+n > len(payload) {
				return false
			}
			if nt := payload[i+2] & 0x1f; nt == naluIDR || nt == naluSPS {
				return true
			}
			i += 2 + n
		}
	case naluFUA:
		if len(payload) < 2 {
			return false
		}
		fu := payload[1]
		nt := fu & 0x1f
		return fu&0x80 != 0 && (nt == naluIDR || nt == naluSPS)
	}
	return false
}

// vp9Keyframe: the first packet (B bit) of a picture that is not
// inter-predicted (P bit clear), from the VP9 payload descriptor's first
// byte.
func vp9Keyframe(payload []byte) bool {
	return len(payload) > 0 && payload[0]&0x40 == 0 && payload[0]&0x08 != 0
}
