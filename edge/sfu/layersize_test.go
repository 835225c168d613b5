package sfu

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// vp8Key is a VP8 keyframe's payload: a one-byte descriptor (start of
// partition 0), the frame tag, the start code and width by height.
func vp8Key(w, h int) []byte {
	return []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8), 0xaa}
}

func TestVP8FrameSize(t *testing.T) {
	key := vp8Key(1280, 720)[1:]
	scaled := vp8Key(640, 360)[1:]
	scaled[7] |= 0xc0 // upscaling bits above the width
	tests := []struct {
		name  string
		frame []byte
		w, h  int
		ok    bool
	}{
		{"keyframe", key, 1280, 720, true},
		{"upscaling bits ignored", scaled, 640, 360, true},
		{"interframe", append([]byte{0x01}, key[1:]...), 0, 0, false},
		{"no start code", append(append([]byte{}, key[:3]...), 0, 0, 0, 0, 5, 0, 5), 0, 0, false},
		{"short", key[:9], 0, 0, false},
		{"zero width", vp8Key(0, 720)[1:], 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, h, ok := vp8FrameSize(tt.frame)
			if ok != tt.ok || (ok && (w != tt.w || h != tt.h)) {
				t.Errorf("vp8FrameSize = %d, %d, %v; want %d, %d, %v", w, h, ok, tt.w, tt.h, tt.ok)
			}
		})
	}
}

func FuzzVP8FrameSize(f *testing.F) {
	f.Add(vp8Key(1280, 720))
	f.Add([]byte{0x90, 0x80, 0x12, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, payload []byte) {
		d := parseVP8(payload)
		if d.invalid || d.size > len(payload) {
			return
		}
		if w, h, ok := vp8FrameSize(payload[d.size:]); ok && (w <= 0 || h <= 0 || w > 0x3fff || h > 0x3fff) {
			t.Errorf("vp8FrameSize = %d×%d; want both within 1..16383", w, h)
		}
	})
}

// TestLayerCovering: the layer a size asks for follows the sizes the
// layers' keyframes gave, estimates the layers not yet seen from the
// nearest one that was, and uses rid order (a 1280×720 top) with none.
func TestLayerCovering(t *testing.T) {
	p := &Publication{vp8: true, keyframe: vp8Keyframe}
	p.subs.Store(&[]*Subscription{})
	for i := range maxLayers {
		p.layers[i].Store(&layer{pub: p, index: i})
	}
	see := func(i, w, h int) {
		in := inbound{layer: p.layer(i), payload: vp8Key(w, h), key: -1}
		if !in.keyframe() {
			t.Fatalf("vp8Key(%d, %d) is no keyframe", w, h)
		}
		p.noteSize(p.layer(i), &in)
	}
	check := func(when string, w, h, want int) {
		t.Helper()
		if got := p.layerCovering(w, h); got != want {
			t.Errorf("%s: layerCovering(%d, %d) = %d; want %d", when, w, h, got, want)
		}
	}
	check("no sizes", 320, 0, 0)
	check("no sizes", 321, 0, 1)
	check("no sizes", 0, 360, 1)
	check("no sizes", 1280, 720, 2)
	check("no sizes", 4000, 0, 2)
	check("no sizes", 0, 0, 0)

	see(0, 480, 270) // a 1920×1080 camera: the others are estimated
	check("low known", 480, 0, 0)
	check("low known", 900, 0, 1)
	check("low known", 1280, 0, 2)

	see(1, 640, 480) // and the middle layer says otherwise
	check("low and middle known", 600, 400, 1)
	check("low and middle known", 641, 0, 2)
	if w, h := p.layerSize(2); w != 1280 || h != 960 {
		t.Errorf("layerSize(2) = %d×%d; want 1280×960, twice the nearest known", w, h)
	}
}

// TestDeclaredLayerSizes: an offer that declares its layers' sizes in
// a=rid restrictions (a 1080p camera's, here for H.264, whose keyframes
// the server does not read) gives the layers those sizes, so a subscriber
// asking for 900 pixels wide gets the middle layer, which the rid order's
// 640 would not cover. A restriction without both sides, or out of
// range, declares nothing.
func TestDeclaredLayerSizes(t *testing.T) {
	h := newHarness(t, Config{})
	restrictions := map[string]string{
		"q": "max-width=480;max-height=270",
		"h": "pt=96;max-width=960;max-height=540",
		"f": "max-width=1920;max-height=1080",
	}
	h.publisherOffer = func(_ testing.TB, d webrtc.SessionDescription) webrtc.SessionDescription {
		for rid, r := range restrictions {
			d.SDP = strings.Replace(d.SDP, "a=rid:"+rid+" send\r\n", "a=rid:"+rid+" send "+r+"\r\n", 1)
		}
		return d
	}
	pub := h.newSimulcastPublisher(t, h264)
	video := pub.publication(t)
	for i, want := range [][2]int{{480, 270}, {960, 540}, {1920, 1080}} {
		if w, h := video.layerSize(i); w != want[0] || h != want[1] {
			t.Errorf("layerSize(%d) = %d×%d; want the declared %d×%d", i, w, h, want[0], want[1])
		}
	}
	if got := video.layerCovering(900, 0); got != 1 {
		t.Errorf("layerCovering(900, 0) = %d; want 1 (960 wide as declared)", got)
	}
	for _, bad := range []string{"send max-width=320", "send max-width=0;max-height=180", "send max-width=99999;max-height=180", "send max-width=x;max-height=180", "send"} {
		if got := ridSize(bad); got != 0 {
			t.Errorf("ridSize(%q) = %#x; want 0", bad, got)
		}
	}
}
