package edge

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// simulcastPublisher publishes one VP8 video track in three RID layers
// through the Go client (client.PublishSimulcast) and sends a frame on
// every active layer each 10 ms until the test ends: a keyframe every
// tenth frame and when one is asked for, whose header says 320×180,
// 640×360 and 1280×720 for the three layers. The last payload byte names the
// layer, so a subscriber can tell which one it receives. Like a browser,
// it stops writing the layers the server's `layers` leaves out.
type simulcastPublisher struct {
	c     *client.Client
	track *client.SimulcastTrack
	h264  bool // H.264 frames instead of VP8's
	stop  chan struct{}
	wg    sync.WaitGroup
}

// dialSimulcast joins room as identity with a client able to publish
// simulcast.
func (ts *testServer) dialSimulcast(t *testing.T, room, identity string) *client.Client {
	t.Helper()
	api, err := client.NewSimulcastAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatal(err)
	}
	return ts.dialWith(t, ts.token(t, room, identity, bothGrants), client.Options{API: api})
}

func publishSimulcast(t *testing.T, c *client.Client) *simulcastPublisher {
	t.Helper()
	return publishSimulcastWith(t, c, webrtc.MimeTypeVP8, [3]client.LayerSize{})
}

// publishSimulcastWith is publishSimulcast in codec mime (VP8 or H.264),
// declaring sizes in the offer (PublishSimulcastSized).
func publishSimulcastWith(t *testing.T, c *client.Client, mime string, sizes [3]client.LayerSize) *simulcastPublisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	codec := webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000}
	if mime == webrtc.MimeTypeH264 {
		codec.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
	}
	track, err := c.PublishSimulcastSized(ctx, codec, "video", sizes)
	if err != nil {
		t.Fatalf("PublishSimulcast: %v", err)
	}
	p := &simulcastPublisher{c: c, track: track, h264: mime == webrtc.MimeTypeH264, stop: make(chan struct{})}
	p.wg.Add(1)
	go p.send()
	t.Cleanup(func() { close(p.stop); p.wg.Wait() })
	return p
}

func (p *simulcastPublisher) send() {
	defer p.wg.Done()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var seq [3]uint16
	for frame := uint32(1); ; frame++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		for l := range seq {
			key := frame%10 == 0 || p.track.KeyframeWanted(l)
			payload := vp8Frame(key, 320<<l, 180<<l, byte(l))
			if p.h264 {
				payload = h264Frame(key, byte(l))
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq[l] + 1, Timestamp: frame * 900, Marker: true},
				Payload: payload}
			if sent, _ := p.track.WriteRTP(l, pkt); sent {
				seq[l]++
			}
		}
	}
}

// vp8Frame is a one-packet VP8 frame: its payload descriptor (start of a
// partition), then a keyframe's header with the start code and width by
// height (RFC 6386 section 9.1), or an interframe's tag, and last the
// byte tag.
func vp8Frame(key bool, width, height int, tag byte) []byte {
	if !key {
		return []byte{0x10, 0x01, 0x00, 0x00, tag} // frame tag's P bit set: an interframe
	}
	return []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a,
		byte(width), byte(width >> 8), byte(height), byte(height >> 8), tag}
}

// h264Frame is a one-packet H.264 frame: an IDR slice's NAL unit on a
// keyframe, a non-IDR slice's otherwise, and last the byte tag.
func h264Frame(key bool, tag byte) []byte {
	if key {
		return []byte{0x65, 0x88, 0x84, tag}
	}
	return []byte{0x41, 0x9a, 0x02, tag}
}

// simulcastReceiver reads the one video track forwarded to a client and
// records the layer each packet came from and any break in its sequence
// numbers.
type simulcastReceiver struct {
	c       *client.Client
	trackID chan string

	mu      sync.Mutex // guards the fields below
	packets int
	layer   int // of the last packet
	last    uint16
	gaps    int
	wg      sync.WaitGroup
}

func receiveSimulcast(t *testing.T, c *client.Client) *simulcastReceiver {
	t.Helper()
	r := &simulcastReceiver{c: c, trackID: make(chan string, 1), layer: -1}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case rt := <-c.Tracks():
			r.trackID <- rt.Track.ID()
			r.read(rt.Track)
		case <-c.Done():
		}
	}()
	t.Cleanup(func() { c.Close(); r.wg.Wait() })
	return r
}

func (r *simulcastReceiver) read(tr *webrtc.TrackRemote) {
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.packets > 0 && pkt.SequenceNumber != r.last+1 {
			r.gaps++
		}
		r.packets++
		r.last = pkt.SequenceNumber
		if n := len(pkt.Payload); n > 0 {
			r.layer = int(pkt.Payload[n-1])
		}
		r.mu.Unlock()
	}
}

// track waits for the forwarded track and returns its id (the
// publication id).
func (r *simulcastReceiver) track(t *testing.T) string {
	t.Helper()
	select {
	case id := <-r.trackID:
		return id
	case <-time.After(15 * time.Second):
		t.Fatal("no track forwarded within 15s")
		return ""
	}
}

func (r *simulcastReceiver) state() (packets, layer, gaps int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.packets, r.layer, r.gaps
}

// awaitLayer waits until packets of layer arrive.
func (r *simulcastReceiver) awaitLayer(t *testing.T, layer int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, l, _ := r.state()
		if l == layer {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiving layer %d after %s (%d packets); want %d", l, within, n, layer)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// awaitLayers waits for a `layers` message to the publisher c naming
// exactly active.
func awaitLayers(t *testing.T, c *client.Client, within time.Duration, active ...string) *signal.Message {
	t.Helper()
	return waitEvent(t, c, within, fmt.Sprintf("layers %v", active), func(m *signal.Message) bool {
		return m.Type == signal.TypeLayers && slices.Equal(m.Active, active)
	})
}
