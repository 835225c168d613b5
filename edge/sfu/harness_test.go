package sfu

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait in these tests.
const waitFor = 10 * time.Second

// harness is one Engine on 127.0.0.1 with a metrics reader.
type harness struct {
	engine     *Engine
	reader     *sdkmetric.ManualReader
	publishers int // made so far: each gets its own sequence numbers

	// publisherOffer, when set, rewrites a test publisher's offer on its
	// way to the server (as another browser would have written it), and
	// publisherAnswer keeps the server's answer to it.
	publisherOffer  func(testing.TB, webrtc.SessionDescription) webrtc.SessionDescription
	publisherAnswer string
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	return newHarnessLogging(t, cfg, nil)
}

// newHarnessLogging is newHarness with the engine logging to log.
func newHarnessLogging(t testing.TB, cfg Config, log *slog.Logger) *harness {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1"
	}
	e, err := New(cfg, mp.Meter("sfu_test"), log)
	if err != nil {
		t.Fatalf("New(%+v) = %v; want nil error", cfg, err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Engine.Close() = %v; want nil", err)
		}
	})
	return &harness{engine: e, reader: reader}
}

// counter returns the current value of the counter name for kind, or of
// a counter without attributes for kind "".
func (h *harness) counter(t testing.TB, name, kind string) int64 {
	t.Helper()
	want := attribute.NewSet()
	if kind != "" {
		want = attribute.NewSet(attribute.String("kind", kind))
	}
	return h.counterWith(t, name, want)
}

// layerCounter returns the current value of the counter name for a
// simulcast layer ("0", "1" or "2").
func (h *harness) layerCounter(t testing.TB, name, layer string) int64 {
	t.Helper()
	return h.counterWith(t, name, attribute.NewSet(attribute.String("layer", layer)))
}

// counterWith returns the current value of the counter name with the
// attributes want.
func (h *harness) counterWith(t testing.TB, name string, want attribute.Set) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect() = %v", err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("metric %s is %T; want Sum[int64]", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				if dp.Attributes.Equals(&want) {
					return dp.Value
				}
			}
		}
	}
	return 0
}

// clientAPI builds the API of a test participant on UDP: Pion's default
// codecs and interceptors, loopback-only host candidates, and SRTP replay
// protection as asked. extra interceptors go first, closest to the
// network.
func clientAPI(t testing.TB, replayProtection bool, extra ...interceptor.Factory) *webrtc.API {
	t.Helper()
	return clientAPIWith(t, func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.DisableSRTPReplayProtection(!replayProtection)
	}, extra...)
}

// clientAPIWith is a test participant's API with settings changed by set.
func clientAPIWith(t testing.TB, set func(*webrtc.SettingEngine), extra ...interceptor.Factory) *webrtc.API {
	t.Helper()
	return clientAPIMedia(t, func(*webrtc.MediaEngine) error { return nil }, set, extra...)
}

// clientAPIAnswering is a client API over UDP that answers offers in
// the given DTLS role: as the DTLS client (the server then has its
// ServerHello, so the direct write path's keys) or as the DTLS server.
func clientAPIAnswering(t testing.TB, role webrtc.DTLSRole) *webrtc.API {
	t.Helper()
	return clientAPIWith(t, func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		if err := se.SetAnsweringDTLSRole(role); err != nil {
			t.Fatalf("SetAnsweringDTLSRole() = %v", err)
		}
	})
}

// clientAPIMedia is clientAPIWith with the media engine (Pion's default
// codecs) added to by media: header extensions, for one.
func clientAPIMedia(t testing.TB, media func(*webrtc.MediaEngine) error, set func(*webrtc.SettingEngine), extra ...interceptor.Factory) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatalf("RegisterDefaultCodecs() = %v", err)
	}
	if err := media(m); err != nil {
		t.Fatalf("media engine: %v", err)
	}
	r := &interceptor.Registry{}
	for _, f := range extra {
		r.Add(f)
	}
	if err := webrtc.RegisterDefaultInterceptors(m, r); err != nil {
		t.Fatalf("RegisterDefaultInterceptors() = %v", err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	// Only ever talk to loopback, even when the engine also offers the
	// machine's other addresses (wildcard binds).
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	set(&se)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(r), webrtc.WithSettingEngine(se))
}

func newClientPC(t testing.TB, api *webrtc.API) *webrtc.PeerConnection {
	t.Helper()
	return newClientPCConfig(t, api, webrtc.Configuration{})
}

// newClientPCConfig is newClientPC with configuration c.
func newClientPCConfig(t testing.TB, api *webrtc.API, c webrtc.Configuration) *webrtc.PeerConnection {
	t.Helper()
	pc, err := api.NewPeerConnection(c)
	if err != nil {
		t.Fatalf("NewPeerConnection() = %v", err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// newPC is one of the Engine's PeerConnection constructors.
type newPC func(webrtc.Configuration) (*webrtc.PeerConnection, error)

func newServerPC(t testing.TB, dial newPC) *webrtc.PeerConnection {
	t.Helper()
	pc, err := dial(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("server NewPeerConnection() = %v", err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// negotiate runs one offer/answer with complete (non-trickled) gathering.
func negotiate(t testing.TB, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	negotiateEdited(t, offerer, answerer, func(sdp string) string { return sdp })
}

// negotiateEdited is negotiate with the answer edited by editAnswer on
// its way to the offerer.
func negotiateEdited(t testing.TB, offerer, answerer *webrtc.PeerConnection, editAnswer func(string) string) {
	t.Helper()
	same := func(_ testing.TB, d webrtc.SessionDescription) webrtc.SessionDescription { return d }
	negotiateRewritten(t, offerer, answerer, same, editAnswer)
}

// negotiateRewritten is negotiate with the offer rewritten by editOffer
// and the answer by editAnswer on their way; it returns the answer.
func negotiateRewritten(t testing.TB, offerer, answerer *webrtc.PeerConnection,
	editOffer func(testing.TB, webrtc.SessionDescription) webrtc.SessionDescription, editAnswer func(string) string) string {
	t.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatalf("CreateOffer() = %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatalf("SetLocalDescription(offer) = %v", err)
	}
	<-gathered
	answer := answerTo(t, answerer, editOffer(t, *offerer.LocalDescription()), editAnswer)
	if err := offerer.SetRemoteDescription(answer); err != nil {
		t.Fatalf("SetRemoteDescription(answer) = %v", err)
	}
	return answer.SDP
}

// answerTo applies offer to answerer and returns its answer, gathered and
// edited by editAnswer.
func answerTo(t testing.TB, answerer *webrtc.PeerConnection, offer webrtc.SessionDescription, editAnswer func(string) string) webrtc.SessionDescription {
	t.Helper()
	if err := answerer.SetRemoteDescription(offer); err != nil {
		t.Fatalf("SetRemoteDescription(offer) = %v", err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatalf("CreateAnswer() = %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatalf("SetLocalDescription(answer) = %v", err)
	}
	<-gathered
	desc := *answerer.LocalDescription()
	desc.SDP = editAnswer(desc.SDP)
	return desc
}

// source writes numbered packets through a TrackLocalStaticRTP, as a
// browser's encoder would: sequence numbers and payloads are known, so a
// receiver can check both.
type source struct {
	track   *webrtc.TrackLocalStaticRTP
	sender  *webrtc.RTPSender
	size    int
	baseSeq uint16
	next    uint32 // index of the next packet
}

// payload is packet i's payload: its index, then bytes derived from it.
func payload(i uint32, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, i)
	for j := 4; j < size; j++ {
		b[j] = byte(int(i)*7 + j)
	}
	return b
}

// nextPacket makes the source's next numbered packet.
func nextPacket(s *source) *rtp.Packet {
	i := s.next
	s.next++
	return &rtp.Packet{Header: rtp.Header{
		Version: 2, SequenceNumber: s.baseSeq + uint16(i), Timestamp: i * 3000, Marker: true,
	}, Payload: payload(i, s.size)}
}

// send writes n packets, paced so a loopback socket buffer never
// overflows, and returns the index of the first.
func (s *source) send(t testing.TB, n int) uint32 {
	t.Helper()
	first := s.next
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for range n {
		pkt := nextPacket(s)
		if err := s.track.WriteRTP(pkt); err != nil {
			t.Fatalf("WriteRTP(seq %d) = %v", pkt.SequenceNumber, err)
		}
		<-tick.C
	}
	return first
}

// publisher is a test participant publishing VP8 video and Opus audio, and
// the server side of its connection, which publishes what it receives.
type publisher struct {
	pc           *webrtc.PeerConnection
	server       *webrtc.PeerConnection
	video, audio *source
	pubs         chan *Publication
}

const publisherID = "PA_publisher"

func (h *harness) newPublisher(t testing.TB) *publisher {
	t.Helper()
	return h.newPublisherWith(t, vp8)
}

// vp8 is the video codec test publishers send unless told otherwise.
var vp8 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}

// newPublisherWith is newPublisher sending video in the given codec.
func (h *harness) newPublisherWith(t testing.TB, video webrtc.RTPCodecCapability) *publisher {
	t.Helper()
	p := &publisher{
		pc:     newClientPC(t, clientAPI(t, true)),
		server: newServerPC(t, h.engine.NewPublisherPeerConnection),
		pubs:   make(chan *Publication, 2),
	}
	// Distinct sequence numbers per publisher, as real encoders pick at
	// random, so no subscriber sees two streams' numbers coincide.
	base := uint16(1000 + 7919*h.publishers)
	h.publishers++
	p.video = p.addSource(t, video, "video", 900, base)
	p.audio = p.addSource(t, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", 120, base+64500)
	p.server.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		pub, err := h.engine.Publish(tr, recv, p.server, publisherID)
		if err != nil {
			t.Errorf("Publish() = %v", err)
			return
		}
		t.Cleanup(pub.Close)
		p.pubs <- pub
	})
	h.negotiatePublisher(t, p.pc, p.server)
	return p
}

func (p *publisher) addSource(t testing.TB, c webrtc.RTPCodecCapability, id string, size int, baseSeq uint16) *source {
	t.Helper()
	track, err := webrtc.NewTrackLocalStaticRTP(c, id, "camera")
	if err != nil {
		t.Fatalf("NewTrackLocalStaticRTP(%s) = %v", c.MimeType, err)
	}
	sender, err := p.pc.AddTrack(track)
	if err != nil {
		t.Fatalf("AddTrack(%s) = %v", id, err)
	}
	return &source{track: track, sender: sender, size: size, baseSeq: baseSeq}
}

// publications sends packets until the server has published both tracks
// and returns the video and audio publications.
func (p *publisher) publications(t testing.TB) (video, audio *Publication) {
	t.Helper()
	deadline := time.After(waitFor)
	for video == nil || audio == nil {
		p.video.send(t, 1)
		p.audio.send(t, 1)
		select {
		case pub := <-p.pubs:
			if pub.Kind() == webrtc.RTPCodecTypeVideo {
				video = pub
			} else {
				audio = pub
			}
		case <-deadline:
			t.Fatalf("publications: server published video=%v audio=%v within %s; want both", video != nil, audio != nil, waitFor)
		default:
		}
	}
	return video, audio
}

// feed writes a video packet, and an audio one when audio is set, every
// period until the test ends.
func (p *publisher) feed(t testing.TB, period time.Duration, audio bool) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = p.video.track.WriteRTP(nextPacket(p.video))
				if audio {
					_ = p.audio.track.WriteRTP(nextPacket(p.audio))
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// readPLIs reports every PLI the publisher's video sender receives.
func (p *publisher) readPLIs(t testing.TB) <-chan time.Time {
	t.Helper()
	out := make(chan time.Time, 100)
	ssrc := uint32(p.video.sender.GetParameters().Encodings[0].SSRC)
	go func() {
		for {
			pkts, _, err := p.video.sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				if pli, ok := pkt.(*rtcp.PictureLossIndication); ok && pli.MediaSSRC == ssrc {
					select {
					case out <- time.Now():
					default:
					}
				}
			}
		}
	}()
	return out
}

// received is one track a test subscriber receives.
type received struct {
	track *webrtc.TrackRemote
	recv  *webrtc.RTPReceiver
	pkts  chan *rtp.Packet
	ended chan struct{} // closed when reading the track fails (removed)
}

// subscriber is a test participant receiving, and the server side of its
// subscriber connection.
type subscriber struct {
	pc     *webrtc.PeerConnection
	conn   *SubscriberConn
	server *webrtc.PeerConnection // conn's, for reading its state
	tracks chan *received
	// discard makes tracks read raw packets into one buffer and keep
	// none, so benchmarks measure the server, not the test's parsing.
	discard bool
}

// newSubscriber makes a test participant that receives on a server
// connection made by NewSubscriberConn.
func (h *harness) newSubscriber(t testing.TB, api *webrtc.API) *subscriber {
	t.Helper()
	return h.newSubscriberConfig(t, api, webrtc.Configuration{})
}

// newSubscriberConfig is newSubscriber with the client's configuration.
func (h *harness) newSubscriberConfig(t testing.TB, api *webrtc.API, c webrtc.Configuration) *subscriber {
	t.Helper()
	conn := subscriberConn(t, h.engine)
	s := &subscriber{
		pc:     newClientPCConfig(t, api, c),
		conn:   conn,
		server: conn.PeerConnection(),
		tracks: make(chan *received, 4),
	}
	s.pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		r := &received{track: tr, recv: recv, pkts: make(chan *rtp.Packet, 8192), ended: make(chan struct{})}
		s.tracks <- r
		if s.discard {
			go r.drain()
		} else {
			go r.read()
		}
	})
	return s
}

// subscriberConn is a connection from NewSubscriberConn, closed when the
// test ends.
func subscriberConn(t testing.TB, e *Engine) *SubscriberConn {
	t.Helper()
	c, err := e.NewSubscriberConn(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("NewSubscriberConn() = %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (r *received) read() {
	defer close(r.ended)
	for {
		pkt, _, err := r.track.ReadRTP()
		if err != nil {
			return
		}
		select {
		case r.pkts <- pkt:
		default: // the test stopped looking
		}
	}
}

// drain reads and drops packets until the track ends.
func (r *received) drain() {
	defer close(r.ended)
	buf := make([]byte, readBufSize)
	for {
		if _, _, err := r.track.Read(buf); err != nil {
			return
		}
	}
}

// subscribe subscribes s to every pub and negotiates.
func (s *subscriber) subscribe(t testing.TB, pubs ...*Publication) []*Subscription {
	t.Helper()
	subs := s.add(t, pubs...)
	s.negotiate(t)
	return subs
}

// add subscribes s to every pub, without negotiating.
func (s *subscriber) add(t testing.TB, pubs ...*Publication) []*Subscription {
	t.Helper()
	var subs []*Subscription
	for _, p := range pubs {
		sub, err := s.conn.Subscribe(p)
		if err != nil {
			t.Fatalf("Subscribe(%s) = %v", p.ID(), err)
		}
		subs = append(subs, sub)
	}
	return subs
}

// negotiate runs one subscriber offer and answer, as edge does, with
// complete (non-trickled) gathering.
func (s *subscriber) negotiate(t testing.TB) {
	t.Helper()
	s.negotiateEdited(t, func(sdp string) string { return sdp })
}

// negotiateEdited is negotiate with the answer edited by editAnswer on
// its way to the server.
func (s *subscriber) negotiateEdited(t testing.TB, editAnswer func(string) string) {
	t.Helper()
	gathered := webrtc.GatheringCompletePromise(s.server)
	if _, err := s.conn.Offer(); err != nil {
		t.Fatalf("Offer() = %v", err)
	}
	<-gathered
	answer := answerTo(t, s.pc, *s.server.LocalDescription(), editAnswer)
	if err := s.conn.Answer(answer); err != nil {
		t.Fatalf("Answer() = %v", err)
	}
}

// awaitTracks sends packets on src until s has received n tracks, and
// returns them by kind.
func (s *subscriber) awaitTracks(t testing.TB, n int, srcs ...*source) map[webrtc.RTPCodecType]*received {
	t.Helper()
	got := map[webrtc.RTPCodecType]*received{}
	deadline := time.After(waitFor)
	for len(got) < n {
		for _, src := range srcs {
			src.send(t, 1)
		}
		select {
		case r := <-s.tracks:
			got[r.track.Kind()] = r
		case <-deadline:
			t.Fatalf("awaitTracks: got %d tracks within %s; want %d", len(got), waitFor, n)
		default:
		}
	}
	return got
}

// expect reads r until it has every packet with index in [first,
// first+n), checking payloads, and returns their sequence numbers by
// index. Packets from before first are skipped.
func (r *received) expect(t testing.TB, first uint32, n, size int) []uint16 {
	t.Helper()
	seqs := make([]uint16, n)
	seen := make([]bool, n)
	missing := n
	deadline := time.After(waitFor)
	for missing > 0 {
		select {
		case pkt := <-r.pkts:
			if len(pkt.Payload) < 4 {
				t.Fatalf("%s packet payload of %d bytes; want %d", r.track.Kind(), len(pkt.Payload), size)
			}
			i := binary.BigEndian.Uint32(pkt.Payload)
			if i < first || i >= first+uint32(n) {
				continue
			}
			if want := payload(i, size); string(pkt.Payload) != string(want) {
				t.Fatalf("%s packet %d payload differs from what was sent", r.track.Kind(), i)
			}
			if !seen[i-first] {
				seen[i-first], seqs[i-first] = true, pkt.SequenceNumber
				missing--
			}
		case <-deadline:
			t.Fatalf("%s: %d of %d packets missing after %s", r.track.Kind(), missing, n, waitFor)
		}
	}
	return seqs
}

// checkContinuous fails unless seqs rise by one each.
func checkContinuous(t testing.TB, what string, seqs []uint16) {
	t.Helper()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("%s: sequence number after %d = %d; want %d", what, seqs[i-1], seqs[i], seqs[i-1]+1)
		}
	}
}
