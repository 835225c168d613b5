package sfu

import (
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.opentelemetry.io/otel/metric/noop"
)

// discardWriter stands in for Pion's TrackLocalWriter so the benchmark
// measures only our forwarding path.
type discardWriter struct{}

func (discardWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	return h.MarshalSize() + len(payload), nil
}

func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// videoPacket is a marshalled 1100-byte video packet, the size issue 6
// measures with, with a transport-cc extension as browsers send it.
func videoPacket(b testing.TB) []byte {
	b.Helper()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 90000, SSRC: 1234}}
	if err := pkt.SetExtension(3, []byte{0, 1}); err != nil {
		b.Fatal(err)
	}
	pkt.Payload = make([]byte, 1100-pkt.MarshalSize())
	raw, err := pkt.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// benchPublication is a VP8 publication without simulcast with n bound
// subscriptions writing to discardWriter, and no goroutines.
func benchPublication(b testing.TB, n int) *Publication {
	b.Helper()
	return layeredPublication(b, n, 1)
}

// layeredPublication is benchPublication with the given number of
// simulcast layers (RIDs q, h, f), whose keyframe requests go nowhere.
func layeredPublication(b testing.TB, n, layers int) *Publication {
	b.Helper()
	m, err := newMetrics(noop.NewMeterProvider().Meter("bench"))
	if err != nil {
		b.Fatal(err)
	}
	e := &Engine{cfg: Config{}.withDefaults(), metrics: m, log: slog.New(slog.DiscardHandler)}
	p := &Publication{kind: webrtc.RTPCodecTypeVideo, engine: e,
		codec: webrtc.RTPCodecParameters{RTPCodecCapability: vp8}, keyframe: vp8Keyframe, vp8: true}
	for i := range layers {
		l := newLayer(p, i, nil)
		l.keyframes = newKeyframeRequester(0, func() {}, func() {})
		if layers > 1 {
			l.rid = ridOrder[i]
		}
		b.Cleanup(l.release)
		p.layers[i].Store(l)
	}
	subs := make([]*Subscription, n)
	for i := range subs {
		subs[i] = newSubscription(p, nil)
		subs[i].bound.Store(&binding{ssrc: uint32(1000 + i), pt: 96, w: discardWriter{}})
	}
	p.subs.Store(&subs)
	return p
}

// BenchmarkForward forwards one packet to N subscribers through our own
// path (parse, buffer for NACKs, per-subscriber header rewrite, metrics)
// with a writer that does nothing: this is the part we control, and it
// must not allocate.
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			benchForward(b, benchPublication(b, n), n)
		})
	}
}

// BenchmarkForwardPion forwards one packet to N real subscriber
// PeerConnections on loopback: our path plus Pion's (interceptors, SRTP
// encryption, the UDP mux's sendto). It calls forward directly, as the
// read loop would, so the publisher's side (SRTP decryption, NACK
// generator, TWCC) is not in it; the subscribers' decryption runs in this
// process too and shows in allocs/op.
func BenchmarkForwardPion(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := newHarness(b, Config{})
			pub := h.newPublisher(b)
			video, _ := pub.publications(b)
			for range n {
				sub := h.newSubscriber(b, clientAPI(b, true))
				sub.discard = true
				sub.subscribe(b, video)
				sub.awaitTracks(b, 1, pub.video)
			}
			benchForward(b, video, n)
		})
	}
}

// benchForward times p.forward of one 1100-byte video packet per op, with
// a new sequence number each time, to n subscribers; ns/write is the cost
// per subscriber.
func benchForward(b *testing.B, p *Publication, n int) {
	pkt := videoPacket(b)
	var h rtp.Header
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt) * n))
	seq := uint16(0)
	for b.Loop() {
		seq++
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		p.forward(p.layer(0), pkt, &h)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/write")
}

// BenchmarkForwardStaticRTP is the naive fan-out issue 6 compares with:
// one TrackLocalStaticRTP added to N subscriber PeerConnections made with
// Pion's default codecs and interceptors (NACK responder buffers per
// subscriber, stats, TWCC header extension), written once per packet. Same
// loopback, same packet, same ns/write as BenchmarkForwardPion.
func BenchmarkForwardStaticRTP(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			track, err := webrtc.NewTrackLocalStaticRTP(vp8, "video", "naive")
			if err != nil {
				b.Fatal(err)
			}
			api := naiveAPI(b)
			bound := make(chan struct{}, n)
			for range n {
				server := newServerPC(b, api.NewPeerConnection)
				if _, err := server.AddTrack(track); err != nil {
					b.Fatal(err)
				}
				client := newClientPC(b, clientAPI(b, true))
				client.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
					bound <- struct{}{}
					r := &received{track: tr, ended: make(chan struct{})}
					go r.drain()
				})
				negotiate(b, server, client)
			}
			awaitBound(b, track, bound, n)
			pkt := videoPacket(b)
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt) * n))
			seq := uint16(0)
			for b.Loop() {
				seq++
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				if _, err := track.Write(pkt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/write")
		})
	}
}

// naiveAPI is a Pion API with its defaults on a UDP mux of its own.
func naiveAPI(b *testing.B) *webrtc.API {
	b.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		b.Fatal(err)
	}
	r := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, r); err != nil {
		b.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	mux := webrtc.NewICEUDPMux(nil, conn)
	b.Cleanup(func() { _ = mux.Close() })
	var se webrtc.SettingEngine
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(r), webrtc.WithSettingEngine(se))
}

// awaitBound writes packets to track until n subscribers have received
// one.
func awaitBound(b *testing.B, track *webrtc.TrackLocalStaticRTP, bound <-chan struct{}, n int) {
	b.Helper()
	deadline := time.After(waitFor)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for got := 0; got < n; {
		select {
		case <-bound:
			got++
		case <-deadline:
			b.Fatalf("%d of %d naive subscribers received media within %s", got, n, waitFor)
		case <-tick.C:
			if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 60000}, Payload: []byte{1}}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
