package load

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// mediaKind is audio or video; it indexes per-kind arrays.
type mediaKind uint8

const (
	kindAudio mediaKind = iota
	kindVideo
	kindCount // number of kinds; as an argument it means "any kind"
)

func (k mediaKind) String() string {
	switch k {
	case kindAudio:
		return "audio"
	case kindVideo:
		return "video"
	}
	return "any"
}

// MediaConfig shapes the synthetic media every publisher sends.
type MediaConfig struct {
	// VideoKbps is the video bitrate; with VideoPacket it sets the packet
	// rate (3520 kbit/s of 1100-byte payloads is 400 packets/s).
	VideoKbps int
	// VideoPacket is the video RTP payload size in bytes (about 1100, as a
	// browser's VP8 packetizer fills an MTU with room for SRTP and TURN).
	VideoPacket int
	// FPS groups video packets into frames: one RTP timestamp per frame,
	// the marker bit on its last packet.
	FPS int
	// KeyframeEvery makes every n-th frame a key frame, so a server that
	// waits for a key frame before forwarding to a new subscriber does not
	// wait long. (Keyframe requests are not answered: the default, every
	// 2 s at 30 fps, bounds the wait instead.)
	KeyframeEvery int
	// AudioPacket is the audio payload size: an Opus packet of 20 ms.
	AudioPacket int
	// AudioPPS is the audio packet rate: 50/s for 20 ms Opus frames.
	AudioPPS int
}

func DefaultMedia() MediaConfig {
	return MediaConfig{VideoKbps: 3520, VideoPacket: 1100, FPS: 30, KeyframeEvery: 60, AudioPacket: 100, AudioPPS: 50}
}

func (c MediaConfig) validate() error {
	switch {
	case c.VideoKbps < 0:
		return fmt.Errorf("-video-kbps must not be negative, got %d", c.VideoKbps)
	case c.VideoPacket < stampSize+16 || c.VideoPacket > 1200:
		return fmt.Errorf("-video-packet must be from %d to 1200 bytes, got %d", stampSize+16, c.VideoPacket)
	case c.AudioPacket < stampSize || c.AudioPacket > 1200:
		return fmt.Errorf("-audio-packet must be from %d to 1200 bytes, got %d", stampSize, c.AudioPacket)
	case c.FPS < 1 || c.FPS > 120:
		return fmt.Errorf("-fps must be from 1 to 120, got %d", c.FPS)
	case c.AudioPPS < 0 || c.AudioPPS > 200:
		return fmt.Errorf("-audio-pps must be from 0 to 200, got %d", c.AudioPPS)
	}
	return nil
}

// VideoPPS is the video packet rate the bitrate and packet size give.
func (c MediaConfig) VideoPPS() float64 {
	return float64(c.VideoKbps) * 1000 / 8 / float64(c.VideoPacket)
}

func (c MediaConfig) pps(k mediaKind) float64 {
	if k == kindVideo {
		return c.VideoPPS()
	}
	return float64(c.AudioPPS)
}

func (c MediaConfig) size(k mediaKind) int {
	if k == kindVideo {
		return c.VideoPacket
	}
	return c.AudioPacket
}

// rtpPacket is what a sender hands its transport: the RTP header fields it
// chose and the payload. The transport owns SSRC and payload type.
type rtpPacket struct {
	marker  bool
	seq     uint16
	ts      uint32
	payload []byte // valid only during the write call
}

// packetWriter is a sender's transport: a Pion track, or a plain UDP
// socket for the floor.
type packetWriter func(p rtpPacket) error

// sender paces one source's packets onto a transport. Video packets are
// spread evenly over time (as a browser's pacer does), grouped into frames
// by RTP timestamp and marker.
type sender struct {
	src     *source
	cfg     MediaConfig
	clk     clock
	write   packetWriter
	errors  atomic.Uint64
	skipped atomic.Uint64 // packets not sent because the sender fell too far behind
	buf     []byte

	// keyNow, when set, reports (once) that a keyframe was asked for: the
	// next frame is one. width and height are what key frames say.
	keyNow        func() bool
	width, height uint16
}

func newSender(src *source, cfg MediaConfig, clk clock, w packetWriter) *sender {
	return &sender{src: src, cfg: cfg, clk: clk, write: w, buf: make([]byte, cfg.size(src.kind)), width: 640, height: 360}
}

// maxLag is how far a sender may fall behind its schedule (the load
// generator starved of CPU) before it skips packets instead of catching up
// in one burst. Skipped packets are counted, never sent late.
const maxLag = 200 * time.Millisecond

// run sends until stop or leave is closed, on an absolute schedule: a
// late wake-up sends every packet that is due, so the configured rate
// holds even when the timer fires late. A transport error is counted, not
// fatal: a server that drops one write should show up as loss, not end
// the run.
func (s *sender) run(stop, leave <-chan struct{}) {
	pps := s.cfg.pps(s.src.kind)
	if pps <= 0 {
		return
	}
	period := time.Duration(float64(time.Second) / pps)
	perFrame := uint32(math.Ceil(pps / float64(s.cfg.FPS)))
	next := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for n := uint32(0); ; {
		now := time.Now()
		if lag := now.Sub(next); lag > maxLag {
			s.skipped.Add(uint64(lag / period))
			next = now
		}
		for ; !next.After(now); next = next.Add(period) {
			if err := s.write(s.packet(n, perFrame)); err != nil {
				s.errors.Add(1)
			}
			n++
		}
		t.Reset(next.Sub(now))
		select {
		case <-stop:
			return
		case <-leave:
			return
		case <-t.C:
		}
	}
}

// packet builds the n-th packet of the source and takes its sequence
// number. The stamp is written last, right before the packet leaves.
func (s *sender) packet(n, perFrame uint32) rtpPacket {
	p := rtpPacket{payload: s.buf, seq: uint16(n)}
	if s.src.kind == kindAudio {
		p.ts = n * 960      // 20 ms at 48 kHz
		p.payload[0] = 0x78 // an Opus TOC byte: SILK-only wideband 20 ms
	} else {
		frame, idx := n/perFrame, n%perFrame
		p.ts = frame * (90000 / uint32(s.cfg.FPS))
		p.marker = idx == perFrame-1
		key := idx == 0 && (frame%uint32(s.cfg.KeyframeEvery) == 0 || s.keyNow != nil && s.keyNow())
		vp8Header(p.payload, idx == 0, key, s.width, s.height)
	}
	putStamp(p.payload, stamp{stream: s.src.id, seq: s.src.next.Add(1) - 1, sent: s.clk.now()})
	return p
}

// vp8Header writes a VP8 RTP payload descriptor (RFC 7741) and, at the
// start of a frame, the frame tag (key frames also carry the start code and
// the frame's size), so a server that inspects VP8 finds a plausible stream.
func vp8Header(p []byte, start, key bool, width, height uint16) {
	clear(p[:11])
	if !start {
		return
	}
	p[0] = 0x10 // S: start of a partition, partition index 0
	if !key {
		p[1] = 0x11 // frame tag: P=1 (inter frame), show_frame=1
		return
	}
	p[1] = 0x10 // frame tag: P=0 (key frame), show_frame=1
	p[4], p[5], p[6] = 0x9d, 0x01, 0x2a
	p[7], p[8] = byte(width), byte(width>>8)
	p[9], p[10] = byte(height), byte(height>>8)
}
