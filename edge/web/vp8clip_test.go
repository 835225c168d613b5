package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
)

// clipLayer is one simulcast layer of a camera clip: its size and the
// bitrate it is encoded at.
type clipLayer struct {
	Width, Height int
	Kbps          int
}

// cameraLayers are a browser's 720p simulcast camera: about 150 kbit/s,
// 500 kbit/s and 1.85 Mbit/s, 2.5 Mbit/s in all.
var cameraLayers = [3]clipLayer{{320, 180, 150}, {640, 360, 500}, {1280, 720, 1850}}

// clipFrames is a clip's length at 30 frames a second: 1 s (encoding
// takes Chromium seconds a layer on a loaded machine).
const clipFrames = 30

// clip is a camera's VP8 frames per layer, lowest first. Frame 0 of
// each is its only keyframe, and the picture moves through one period
// over the clip, so a publisher loops frames 1 to the last (each applied
// to the picture before it, as encoded, but for the encoder's small
// drift) and sends frame 0 only when a keyframe is asked for, as a
// browser's encoder does: keyframes every second would be bursts no
// real camera sends.
type clip [3][][]byte

// kbps is layer l's bitrate as looped (its keyframe left out) at 30
// frames a second.
func (c clip) kbps(l int) float64 {
	n := 0
	for _, f := range c[l][1:] {
		n += len(f)
	}
	return float64(n) * 8 / 1000 / (float64(len(c[l])-1) / 30)
}

// encodeClipJS encodes clipFrames frames of a changing picture (moving
// bars over noise, enough detail for the encoder to spend its bitrate)
// with WebCodecs' VP8 encoder at each layer's size and bitrate, and
// returns the frames, base64, per layer.
const encodeClipJS = `(async (layers, frames) => {
  const started = performance.now();
  // The layers encode at once, as a browser's simulcast encoders do.
  const out = await Promise.all(layers.map(async (l) => {
    const canvas = new OffscreenCanvas(l.Width, l.Height);
    const g = canvas.getContext("2d");
    const chunks = [];
    let failed = null;
    const enc = new VideoEncoder({
      output: (c) => { const b = new Uint8Array(c.byteLength); c.copyTo(b); chunks.push({ key: c.type === "key", data: b.toBase64() }); },
      error: (e) => { failed = e; },
    });
    enc.configure({ codec: "vp8", width: l.Width, height: l.Height, bitrate: l.Kbps * 1000, framerate: 30, bitrateMode: "constant", latencyMode: "realtime" });
    // One noise picture twice as wide as the frame, shown shifted
    // further each frame: detail that moves, cheap to draw.
    const noise = new OffscreenCanvas(2 * l.Width, l.Height);
    const px = new ImageData(2 * l.Width, l.Height);
    for (let p = 0; p < px.data.length; p += 4) {
      const v = (Math.random() * 64) | 0;
      px.data[p] = v; px.data[p + 1] = v; px.data[p + 2] = v; px.data[p + 3] = 255;
    }
    noise.getContext("2d").putImageData(px, 0, 0);
    // The picture moves a whole period over the clip, so that frame
    // "frames" would be frame 0 again and the clip loops smoothly.
    for (let i = 0; i < frames; i++) {
      const x = Math.round(i * l.Width / frames);
      g.drawImage(noise, -x, 0);
      for (let b = 0; b < 8; b++) {
        g.fillStyle = "hsl(" + ((b * 45 + i * 360 / frames) % 360) + ", 70%, 50%)";
        g.fillRect((x + b * l.Width / 8) % l.Width, 0, l.Width / 16, l.Height);
      }
      const f = new VideoFrame(canvas, { timestamp: Math.round(i * 1e6 / 30) });
      enc.encode(f, { keyFrame: i === 0 });
      f.close();
    }
    await enc.flush();
    enc.close();
    if (failed) throw failed;
    return chunks;
  }));
  return JSON.stringify({ layers: out, ms: performance.now() - started });
})`

// encodeClip encodes a camera clip of layers in the page p (a secure
// origin: WebCodecs needs one) with Chromium's own VP8 encoder, so that
// Go publishers send what a browser can decode.
func encodeClip(t *testing.T, p *page, layers [3]clipLayer) clip {
	t.Helper()
	args, err := json.Marshal(layers)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Minute)
	defer cancel()
	script := fmt.Sprintf("%s(%s, %d)", encodeClipJS, args, clipFrames)
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("encode a VP8 clip in %s: %v", p.name, err)
	}
	var out struct {
		Layers [3][]struct {
			Key  bool
			Data string
		}
		MS float64
	}
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("decode the VP8 clip: %v", err)
	}
	t.Logf("encoded a %d-frame VP8 clip of 3 layers in %.1f s", clipFrames, out.MS/1000)
	var c clip
	for l, frames := range out.Layers {
		if len(frames) != clipFrames || !frames[0].Key {
			t.Fatalf("VP8 clip layer %d: %d frames, first a keyframe: %v; want %d starting with a keyframe", l, len(frames), len(frames) > 0 && frames[0].Key, clipFrames)
		}
		for _, f := range frames {
			b, err := base64.StdEncoding.DecodeString(f.Data)
			if err != nil {
				t.Fatalf("VP8 clip layer %d: %v", l, err)
			}
			c[l] = append(c[l], b)
		}
	}
	return c
}

// opusSilence is one 20 ms Opus frame of silence (a CELT comfort-noise
// TOC and nothing else): audio a browser counts and decodes, at the
// packet rate of a real microphone.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// publishClip publishes c as a simulcast camera (its layers' sizes
// declared) and a microphone of Opus silence from the Go client pub,
// 30 frames and 50 audio packets a second, until the test ends. A layer
// that the server asks a keyframe of starts the clip over (frame 0 is
// the keyframe), as a browser's encoder answers a PLI at once.
func publishClip(ctx context.Context, t *testing.T, pub *client.Client, c clip) {
	t.Helper()
	var sizes [3]client.LayerSize
	for l, layer := range cameraLayers {
		sizes[l] = client.LayerSize{Width: layer.Width, Height: layer.Height}
	}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	video, err := pub.PublishSimulcastSized(ctx, vp8, "camera", sizes)
	if err != nil {
		t.Fatalf("publish the camera: %v", err)
	}
	audio, err := client.NewAudioTrack("microphone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, audio); err != nil {
		t.Fatalf("publish the microphone: %v", err)
	}
	f := &clipFeed{clip: c, video: video, audio: audio}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		f.run(stop)
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// clipFeed is what publishClip sends; its run goroutine owns every field.
type clipFeed struct {
	clip    clip
	video   *client.SimulcastTrack
	audio   *webrtc.TrackLocalStaticRTP
	vp8     [3]codecs.VP8Payloader // per layer: each numbers its own pictures
	next    [3]int                 // the frame of each layer to send next
	seq     [3]uint16
	frames  uint32 // frame ticks so far: the video timestamp
	samples uint32 // audio samples so far: the audio timestamp
}

func (f *clipFeed) run(stop <-chan struct{}) {
	for l := range f.vp8 {
		f.vp8[l].EnablePictureID = true
	}
	video := time.NewTicker(time.Second / 30)
	defer video.Stop()
	audio := time.NewTicker(20 * time.Millisecond)
	defer audio.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
	for {
		select {
		case <-stop:
			return
		case <-video.C:
			for l := range f.clip {
				f.sendFrame(l, pkt)
			}
			f.frames++
		case <-audio.C:
			pkt.SequenceNumber, pkt.Timestamp, pkt.Marker = uint16(f.samples/960), f.samples, true
			pkt.Payload = opusSilence
			pkt.Extensions, pkt.Extension = nil, false
			_ = f.audio.WriteRTP(pkt) // a closing client refuses; the test ends
			f.samples += 960
		}
	}
}

// sendFrame sends layer l's next frame of the clip in packets of at most
// 1200 bytes, or its keyframe when one was asked for.
func (f *clipFeed) sendFrame(l int, pkt *rtp.Packet) {
	if f.video.KeyframeWanted(l) {
		f.next[l] = 0
	}
	frame := f.clip[l][f.next[l]]
	if f.next[l]++; f.next[l] == len(f.clip[l]) {
		f.next[l] = 1 // the picture after the last frame is frame 0's
	}
	parts := f.vp8[l].Payload(1200, frame)
	for i, p := range parts {
		pkt.SequenceNumber, pkt.Timestamp, pkt.Marker = f.seq[l], f.frames*3000, i == len(parts)-1
		pkt.Payload = p
		pkt.Extensions, pkt.Extension = nil, false
		if sent, _ := f.video.WriteRTP(l, pkt); !sent {
			return // the layer is off (dynacast), or the client is closing
		}
		f.seq[l]++
	}
}
