package congestiontest

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/netlab"
	"github.com/media-service/media-service/internal/servicetest"
)

// lab is a media-service binary reachable both from the root namespace
// (publishers, uncapped subscribers) and from one netlab namespace whose
// downlink the test caps.
type lab struct {
	svc             *servicetest.Process
	h               *netlab.Host
	outside, inside *webrtc.API
}

func newLab(t *testing.T) *lab {
	t.Helper()
	h := netlab.NewHost(t, "cc")
	env := append(append(servicetest.CleanEnv(), servicetest.LoopbackEnv...), h.ServiceEnv()...)
	svc := servicetest.Start(t, servicetest.Binary(t), append(env, "MEDIA_ICE_TCP_PORT=-1"))
	outside, err := client.NewSimulcastAPI(func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IP(h.HostAddr.AsSlice())) })
	})
	if err != nil {
		t.Fatal(err)
	}
	inside, err := client.NewAPI(h.ConfigureICE)
	if err != nil {
		t.Fatal(err)
	}
	return &lab{svc: svc, h: h, outside: outside, inside: inside}
}

// join joins the room "cc" as identity, inside the namespace (behind the
// capped link) or outside. The client leaves when the test ends.
func (l *lab) join(ctx context.Context, t *testing.T, identity string, inside bool, opts client.Options) *client.Client {
	t.Helper()
	tok, err := auth.DevKeyPair().Mint(auth.Token{Room: "cc", Identity: identity,
		Grants: auth.Grants{Publish: true, Subscribe: true}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	opts.API = l.outside
	if inside {
		opts.API, opts.Dialer = l.inside, &websocket.Dialer{NetDialContext: l.h.DialContext}
	}
	// The namespace cannot reach the service's TURN relay on 127.0.0.1,
	// and nothing here needs it.
	opts.ICEServers = []webrtc.ICEServer{}
	c, err := client.Dial(ctx, "ws://"+l.svc.HTTPAddr+"/v1/rtc", tok, opts)
	if err != nil {
		t.Fatalf("join as %s: %v", identity, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// camera is the bytes per frame of each simulcast layer a publisher
// sends at 30 frames a second: about 150 kbit/s, 500 kbit/s and
// 1.85 Mbit/s, 2.5 Mbit/s in all, like a browser's 720p camera.
var camera = [3]int{625, 2083, 7708}

// layerSizes are the resolutions the layers' keyframes declare.
var layerSizes = [3][2]uint16{{320, 180}, {640, 360}, {1280, 720}}

// audioLayer marks an audio packet's trailer; video trailers carry the
// simulcast layer, 0 to 2.
const audioLayer = 9

// trailerSize is the length of what ends every payload the publisher
// sends: the layer (or audioLayer) and the source's own packet number,
// so a subscriber tells layers apart and counts loss on numbers the
// server does not rewrite.
const trailerSize = 5

// pauseGap is the silence after which a video packet is a paused
// track's resumption, whose numbering jumps, not a loss.
const pauseGap = 500 * time.Millisecond

// maxPacket bounds a video packet's payload, as a packetizer would.
const maxPacket = 1000

// publish publishes a VP8 simulcast track whose layers carry frame[l]
// bytes a frame (30 frames a second; a keyframe twice that, when the
// server asks and every 5 s) and an audio track of 50 packets a second,
// until the test ends.
func publish(ctx context.Context, t *testing.T, c *client.Client, frame [3]int) {
	t.Helper()
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	video, err := c.PublishSimulcast(ctx, vp8, "camera")
	if err != nil {
		t.Fatalf("publish simulcast: %v", err)
	}
	audio, err := client.NewAudioTrack("microphone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, audio); err != nil {
		t.Fatalf("publish audio: %v", err)
	}
	f := &feed{video: video, audio: audio, frame: frame}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		f.run(stop)
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// feed is what publish sends; its run goroutine owns every field.
type feed struct {
	video *client.SimulcastTrack
	audio *webrtc.TrackLocalStaticRTP
	frame [3]int
	n     uint32    // frames sent
	seq   [4]uint32 // packets sent per layer, audio last
}

func (f *feed) run(stop <-chan struct{}) {
	video := time.NewTicker(time.Second / 30)
	defer video.Stop()
	audio := time.NewTicker(20 * time.Millisecond)
	defer audio.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
	buf := make([]byte, 2*camera[2])
	for {
		select {
		case <-stop:
			return
		case <-video.C:
			for l := range f.frame {
				f.sendFrame(l, pkt, buf)
			}
			f.n++
		case <-audio.C:
			pkt.SequenceNumber, pkt.Timestamp, pkt.Marker = uint16(f.seq[3]), f.seq[3]*960, false
			pkt.Payload = f.trailed(3, buf[:100])
			pkt.Extensions, pkt.Extension = nil, false
			_ = f.audio.WriteRTP(pkt) // a closing client refuses; the test ends
		}
	}
}

// sendFrame sends one frame of layer l in packets of at most maxPacket
// bytes, the first with the VP8 payload descriptor's start bit and the
// frame header (a keyframe's with its size).
func (f *feed) sendFrame(l int, pkt *rtp.Packet, buf []byte) {
	key := f.n == 0 || f.n%150 == 0 || f.video.KeyframeWanted(l)
	size := f.frame[l]
	if key {
		size *= 2
	}
	pic := uint16(f.n) & 0x7fff
	for off := 0; off < size; off += maxPacket {
		p := buf[:min(maxPacket, size-off)]
		clear(p)
		p[0], p[1], p[2], p[3] = 0x80, 0x80, 0x80|byte(pic>>8), byte(pic)
		if off == 0 {
			p[0] |= 0x10
			p[4] = 0x11 // an interframe, shown
			if key {
				w, h := layerSizes[l][0], layerSizes[l][1]
				copy(p[4:], []byte{0x10, 0, 0, 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8)})
			}
		}
		pkt.SequenceNumber, pkt.Timestamp = uint16(f.seq[l]), f.n*3000
		pkt.Marker = off+maxPacket >= size
		pkt.Payload = f.trailed(l, p)
		pkt.Extensions, pkt.Extension = nil, false
		if sent, _ := f.video.WriteRTP(l, pkt); !sent {
			return // the layer is off (dynacast), or the client is closing
		}
	}
}

// trailed writes the trailer of layer l's next packet at the end of p.
func (f *feed) trailed(l int, p []byte) []byte {
	tr := p[len(p)-trailerSize:]
	tr[0] = byte(l)
	if l == 3 {
		tr[0] = audioLayer
	}
	binary.BigEndian.PutUint32(tr[1:], f.seq[l])
	f.seq[l]++
	return p
}

// viewer is a subscriber that measures what it receives, per publisher:
// bytes (padding included: it crosses the link too), media packets, loss
// on the publisher's own numbering, the video layer and when it changed,
// and the subscription_state messages it was sent. Its methods are safe
// for concurrent use.
type viewer struct {
	c  *client.Client
	mu sync.Mutex // guards the fields below
	by map[string]*flow
	// states are the subscription_state messages in arrival order.
	states []signal.Message
}

// flow is one publisher's media at a viewer, cumulative.
type flow struct {
	bytes        int64
	audio, video int64 // media packets received (video: retransmissions left out)
	lost         int64 // gaps in the source numbering, less late arrivals
	last         [4]int64
	layer        int // of the last video packet; -1 before any
	changes      []time.Time
	layers       []int  // the layer each change went to
	newest       uint16 // the newest video RTP sequence number, once haveSeq
	haveSeq      bool
	videoAt      time.Time     // when the newest video packet arrived
	audioAt      time.Time     // when the newest audio packet arrived
	audioGap     time.Duration // the longest silence between audio packets since resetAudioGap
}

// newViewer joins identity as a subscriber that measures every track.
func newViewer(ctx context.Context, t *testing.T, l *lab, identity string, inside bool) *viewer {
	t.Helper()
	v := &viewer{by: map[string]*flow{}}
	v.c = l.join(ctx, t, identity, inside, client.Options{
		OnTrack: v.read,
		OnEvent: func(m *signal.Message) {
			if m.Type == signal.TypeSubscriptionState {
				v.mu.Lock()
				v.states = append(v.states, *m)
				v.mu.Unlock()
			}
		},
	})
	return v
}

// read counts one track's packets until it ends.
func (v *viewer) read(rt *client.RemoteTrack) {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := rt.Track.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		v.count(rt.ParticipantID, n, &pkt, rt.Track.Kind() == webrtc.RTPCodecTypeVideo)
	}
}

// count takes one packet of n bytes from publisher from into its flow.
// A video packet older than the newest one (a retransmission) counts
// for bytes and loss, not as a layer change.
func (v *viewer) count(from string, n int, pkt *rtp.Packet, video bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f := v.by[from]
	if f == nil {
		f = &flow{layer: -1, last: [4]int64{-1, -1, -1, -1}}
		v.by[from] = f
	}
	f.bytes += int64(n)
	old := false
	if video {
		old = f.haveSeq && int16(pkt.SequenceNumber-f.newest) < 0
		if !old {
			f.newest, f.haveSeq = pkt.SequenceNumber, true
		}
	}
	payload := pkt.Payload
	if len(payload) < trailerSize {
		return // padding: a probe
	}
	tr := payload[len(payload)-trailerSize:]
	l, seq := int(tr[0]), int64(binary.BigEndian.Uint32(tr[1:]))
	i := l
	now := time.Now()
	resumed := l < 3 && now.Sub(f.videoAt) > pauseGap
	if l < 3 && !old {
		f.videoAt = now
	}
	switch {
	case l == audioLayer:
		i = 3
		f.audio++
		if !f.audioAt.IsZero() {
			f.audioGap = max(f.audioGap, now.Sub(f.audioAt))
		}
		f.audioAt = now
	case l < 3 && l != f.layer && !old:
		// A layer (re)starts: its numbering runs on from where the
		// publisher is now, not from where this viewer left it.
		f.video++
		f.layer, f.last[l] = l, seq
		f.changes, f.layers = append(f.changes, now), append(f.layers, l)
		return
	case l < 3 && resumed && !old:
		f.video++
		f.last[l] = seq // the server resumes a paused track: no loss
		return
	case l < 3 && !old:
		f.video++
	case l < 3:
		// A retransmission: not new video (a paused track's NACKed
		// packets still come), but it may fill a gap.
	default:
		return
	}
	switch prev := f.last[i]; {
	case prev < 0:
		f.last[i] = seq
	case seq > prev:
		f.lost += seq - prev - 1
		f.last[i] = seq
	case f.lost > 0:
		f.lost-- // a retransmission of a packet counted lost
	}
}

// resetAudioGap starts measuring the longest audio silence afresh.
func (v *viewer) resetAudioGap() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, f := range v.by {
		f.audioGap = 0
	}
}

// audioGap is the longest silence between two audio packets of any one
// publisher since resetAudioGap.
func (v *viewer) audioGap() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	var g time.Duration
	for _, f := range v.by {
		g = max(g, f.audioGap)
	}
	return g
}

// tally is a viewer's cumulative counts over all its publishers, or one.
type tally struct {
	bytes, audio, video, lost int64
}

// plus sums two windows.
func (t tally) plus(o tally) tally {
	return tally{t.bytes + o.bytes, t.audio + o.audio, t.video + o.video, t.lost + o.lost}
}

// sub is what happened between an earlier tally and t.
func (t tally) sub(o tally) tally {
	return tally{t.bytes - o.bytes, t.audio - o.audio, t.video - o.video, t.lost - o.lost}
}

// kbps is the window's receive rate (RTP packets) in kbit/s.
func (t tally) kbps(d time.Duration) float64 { return float64(t.bytes) * 8 / 1000 / d.Seconds() }

// loss is the share of media packets lost in the window.
func (t tally) loss() float64 {
	got := t.audio + t.video
	return float64(t.lost) / float64(max(got+t.lost, 1))
}

// total sums every publisher's flow.
func (v *viewer) total() tally {
	v.mu.Lock()
	defer v.mu.Unlock()
	var s tally
	for _, f := range v.by {
		s = s.add(f)
	}
	return s
}

func (t tally) add(f *flow) tally {
	return t.plus(tally{f.bytes, f.audio, f.video, f.lost})
}

// flows is each publisher's tally and current video layer, by
// participant id.
func (v *viewer) flows() (map[string]tally, map[string]int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	tallies, layers := map[string]tally{}, map[string]int{}
	for from, f := range v.by {
		tallies[from], layers[from] = tally{}.add(f), f.layer
	}
	return tallies, layers
}

// layer is the layer of the last video packet from publisher from, or -1.
func (v *viewer) layer(from string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if f := v.by[from]; f != nil {
		return f.layer
	}
	return -1
}

// changesSince lists when publisher from's video layer changed after at.
func (v *viewer) changesSince(from string, at time.Time) []time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []time.Time
	if f := v.by[from]; f != nil {
		for _, c := range f.changes {
			if c.After(at) {
				out = append(out, c)
			}
		}
	}
	return out
}

// layerChange is a change of a received video layer.
type layerChange struct {
	at    time.Time
	layer int
}

// changeLog lists publisher from's video layer changes.
func (v *viewer) changeLog(from string) []layerChange {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []layerChange
	if f := v.by[from]; f != nil {
		for i, at := range f.changes {
			out = append(out, layerChange{at, f.layers[i]})
		}
	}
	return out
}

// stateLog is a copy of the subscription_state messages so far.
func (v *viewer) stateLog() []signal.Message {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]signal.Message(nil), v.states...)
}

// publisherID waits until v receives media and returns its sender's
// participant id (the tests have one publisher at a time).
func publisherID(t *testing.T, v *viewer) string {
	t.Helper()
	var id string
	until(t, "media from the publisher", 30*time.Second, func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		for from, f := range v.by {
			if f.video > 0 {
				id = from
			}
		}
		return id != ""
	})
	return id
}

// until polls cond every 50 ms until it holds and returns how long that
// took, failing the test after limit.
func until(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// window waits d (a measurement window, not a wait for an event) and
// returns what each viewer received in it.
func window(d time.Duration, vs ...*viewer) []tally {
	before := make([]tally, len(vs))
	for i, v := range vs {
		before[i] = v.total()
	}
	time.Sleep(d)
	out := make([]tally, len(vs))
	for i, v := range vs {
		out[i] = v.total().sub(before[i])
	}
	return out
}

// checkChangeRate fails if more than 2 of the layer changes at fall in
// any 10 s.
func checkChangeRate(t *testing.T, what string, at []time.Time) {
	t.Helper()
	for i := range at {
		if i+2 < len(at) && at[i+2].Sub(at[i]) < 10*time.Second {
			t.Errorf("%s: 3 layer changes within %s (from %s); want at most 2 in 10 s", what, at[i+2].Sub(at[i]), at[i].Format("15:04:05.000"))
		}
	}
}
