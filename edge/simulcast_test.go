package edge

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
)

// TestSimulcastPublisherIsOneTrack: a publisher that sends one video track
// as three RID layers, as a browser with simulcast on does, is one
// publication to the room: the subscriber gets one video track and its
// media from the top layer, nothing is logged as a failed publication, and
// the further layers do not count against MEDIA_MAX_TRACKS (2 here: a
// third layer counted as a track would be refused).
func TestSimulcastPublisherIsOneTrack(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxTracks = 2 })
	bob := ts.dial(t, "r", "bob")
	got := receive(t, bob)
	alice := ts.dialWith(t, ts.token(t, "r", "alice", bothGrants), client.Options{API: simulcastAPI(t)})

	rids := []string{"q", "h", "f"}
	layers := make([]*webrtc.TrackLocalStaticRTP, len(rids))
	var sender *webrtc.RTPSender
	for i, rid := range rids {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			"video", "camera", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		layers[i] = tr
		if i == 0 {
			tc, err := alice.Publisher().AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				t.Fatalf("AddTransceiverFromTrack(%s) = %v", rid, err)
			}
			sender = tc.Sender()
		} else if err := sender.AddEncoding(tr); err != nil {
			t.Fatalf("AddEncoding(%s) = %v", rid, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := alice.Publish(ctx); err != nil { // negotiates the layers added above
		t.Fatalf("Publish: %v", err)
	}
	go drainSimulcastRTCP(sender, rids)
	midID, ridID := simulcastExtensionIDs(t, sender)
	mid := ""
	for _, tc := range alice.Publisher().GetTransceivers() {
		if tc.Sender() == sender {
			mid = tc.Mid()
		}
	}

	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for i, tr := range layers {
				// Every tenth frame a keyframe (VP8 payload header P bit 0),
				// so a subscriber can start on any layer.
				p := byte(1)
				if seq%10 == 0 {
					p = 0
				}
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true},
					Payload: []byte{0x10, p, 0x9d, 0x01, 0x2a, byte(i)}}
				_ = pkt.Header.SetExtension(midID, []byte(mid))
				_ = pkt.Header.SetExtension(ridID, []byte(rids[i]))
				_ = tr.WriteRTP(pkt)
			}
		}
	}()
	defer func() { close(stop); <-sent }()

	waitFor(t, 15*time.Second, "bob receiving alice's simulcast video", func() bool {
		st, ok := got.stats(alice.ID(), "video")
		return ok && st.packets >= 20
	})
	if ev := ts.logs.find("publish_failed"); ev != nil {
		t.Errorf("log has publish_failed %v; want a simulcast layer to join its publication quietly", ev)
	}
	waitFor(t, 15*time.Second, "forwarding from the top layer", func() bool {
		return ts.counter(t, "media_rtp_forwarded_layer_packets", "layer", "2") > 0
	})
	got.mu.Lock()
	n := len(got.tracks)
	got.mu.Unlock()
	if n != 1 {
		t.Errorf("bob received %d tracks; want 1 (one video track for three layers)", n)
	}
}

// simulcastAPI is the client's API with the mid and rid header
// extensions a simulcast sender needs, loopback only.
func simulcastAPI(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// simulcastExtensionIDs are the negotiated ids of the mid and rid header
// extensions on sender.
func simulcastExtensionIDs(t *testing.T, sender *webrtc.RTPSender) (mid, rid uint8) {
	t.Helper()
	for _, x := range sender.GetParameters().HeaderExtensions {
		switch x.URI {
		case sdp.SDESMidURI:
			mid = uint8(x.ID)
		case sdp.SDESRTPStreamIDURI:
			rid = uint8(x.ID)
		}
	}
	if mid == 0 || rid == 0 {
		t.Fatalf("negotiated header extensions %+v; want mid and rid", sender.GetParameters().HeaderExtensions)
	}
	return mid, rid
}

// drainSimulcastRTCP reads each layer's RTCP so the sender's interceptors
// run; it ends when the sender stops.
func drainSimulcastRTCP(sender *webrtc.RTPSender, rids []string) {
	for _, rid := range rids {
		go func() {
			for {
				if _, _, err := sender.ReadSimulcastRTCP(rid); err != nil {
					return
				}
			}
		}()
	}
}
