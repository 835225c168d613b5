package sfu

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Audio levels (RFC 6464). Publishers' audio carries the
// ssrc-audio-level header extension: one byte per packet, the level in
// -dBov (0 loudest, 127 silence) and a voice-activity bit. The read loop
// reads it from the raw packet (audioLevel: no allocation, a few
// nanoseconds) and adds it to the publication's window, one atomic add;
// whoever ranks speakers takes the window every interval
// (TakeAudioLevel). Forwarded packets carry no extension (see parseRTP).

// ActiveLevelDBov is the loudest level, in -dBov, that counts as silence:
// speech at a normal distance from a microphone is -20 to -40 dBov, a
// quiet room's noise floor -55 to -70, so a packet louder than -45 dBov is
// someone speaking.
const ActiveLevelDBov = 45

// levelScale is the fixed-point scale of a packet's amplitude in a window.
const levelScale = 4095

// levelAmplitude maps a level in -dBov to its linear amplitude
// (10^(-dBov/20)) times levelScale: ranking by mean amplitude lets one
// loud stretch outweigh the quiet ones, as a listener hears it.
var levelAmplitude = amplitudes()

func amplitudes() (t [128]uint64) {
	for i := range t {
		t[i] = uint64(math.Round(levelScale * math.Pow(10, -float64(i)/20)))
	}
	return t
}

// levelWindow accumulates one publication's audio levels between two
// TakeAudioLevel calls, packed in one word so the read loop pays one
// atomic add per packet: packets in bits 48-63, active packets (louder
// than ActiveLevelDBov) in bits 32-47, the sum of amplitudes in bits
// 0-31 (at most 4095 each, so 65535 packets, 22 minutes of 20 ms audio,
// fit; a window is taken every half second).
type levelWindow struct{ packed atomic.Uint64 }

func (w *levelWindow) add(level uint8) {
	v := uint64(1)<<48 | levelAmplitude[level&0x7f]
	if level&0x7f < ActiveLevelDBov {
		v |= 1 << 32
	}
	w.packed.Add(v)
}

// AudioLevel is what a publication's audio said over one window.
type AudioLevel struct {
	Packets int     // packets that carried a level
	Active  float64 // the share of them louder than ActiveLevelDBov, 0 to 1
	Level   float64 // their mean linear amplitude, 0 (silence) to 1 (full scale)
}

// TakeAudioLevel returns the levels read since the last call and starts
// a new window. Packets is 0 for video, for audio without the extension,
// and for a window without packets.
func (p *Publication) TakeAudioLevel() AudioLevel {
	v := p.levels.packed.Swap(0)
	n := v >> 48
	if n == 0 {
		return AudioLevel{}
	}
	return AudioLevel{Packets: int(n), Active: float64(v>>32&0xffff) / float64(n),
		Level: float64(v&0xffffffff) / float64(n) / levelScale}
}

// audioLevelID is the header extension id the publisher negotiated for
// audio levels on recv, or 0.
func audioLevelID(recv *webrtc.RTPReceiver) uint8 {
	for _, e := range recv.GetParameters().HeaderExtensions {
		if e.URI == sdp.AudioLevelURI && e.ID > 0 && e.ID < 256 {
			return uint8(e.ID)
		}
	}
	return 0
}

// registerAudioLevel lets publishers' audio carry its level.
func registerAudioLevel(m *webrtc.MediaEngine) error {
	err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio)
	if err != nil {
		return fmt.Errorf("sfu: register audio level extension: %w", err)
	}
	return nil
}

// audioLevel returns the level of the RFC 6464 extension with id in pkt,
// an RTP packet, in -dBov, reading the one-byte (RFC 8285 0xBEDE) or
// two-byte header extension form. It allocates nothing and trusts
// nothing: a malformed extension block gives ok false.
func audioLevel(pkt []byte, id uint8) (level uint8, ok bool) {
	if len(pkt) < 12 || pkt[0]&0x10 == 0 || id == 0 {
		return 0, false
	}
	off := 12 + 4*int(pkt[0]&0x0f)
	if len(pkt) < off+4 {
		return 0, false
	}
	profile := uint16(pkt[off])<<8 | uint16(pkt[off+1])
	end := off + 4 + 4*(int(pkt[off+2])<<8|int(pkt[off+3]))
	if end > len(pkt) {
		return 0, false
	}
	switch {
	case profile == 0xBEDE:
		return findElement(pkt[off+4:end], id, false)
	case profile&0xfff0 == 0x1000:
		return findElement(pkt[off+4:end], id, true)
	}
	return 0, false
}

// findElement walks a block of one-byte (RFC 8285 4.2) or two-byte (4.3)
// extension elements for id and returns its first data byte's level.
func findElement(b []byte, id uint8, twoByte bool) (uint8, bool) {
	for i := 0; i < len(b); {
		if b[i] == 0 { // padding
			i++
			continue
		}
		var eid uint8
		var n int
		if twoByte {
			if i+2 > len(b) {
				return 0, false
			}
			eid, n = b[i], int(b[i+1])
			i += 2
		} else {
			eid, n = b[i]>>4, int(b[i]&0x0f)+1
			if eid == 15 { // reserved: stop, as RFC 8285 says
				return 0, false
			}
			i++
		}
		if i+n > len(b) {
			return 0, false
		}
		if eid == id && n > 0 {
			return b[i] & 0x7f, true
		}
		i += n
	}
	return 0, false
}
