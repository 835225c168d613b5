package sfu

import (
	"encoding/binary"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// simulcastPublisher is a Pion participant publishing one video track
// (VP8 or H.264) in three RID layers (q, h, f), as a browser does: every
// packet carries the mid and rid header extensions, and each layer
// answers a PLI on its SSRC with a keyframe. Every packet is a whole
// frame whose payload names its layer and source sequence number.
type simulcastPublisher struct {
	codec  webrtc.RTPCodecCapability
	pc     *webrtc.PeerConnection
	server *webrtc.PeerConnection
	sender *webrtc.RTPSender
	tracks [maxLayers]*webrtc.TrackLocalStaticRTP
	pubs   chan *Publication
	mid    string
	midID  uint8
	ridID  uint8

	frame   uint32          // frames sent per layer
	muted   [maxLayers]bool // layers not sent (encoder paused)
	keyNext [maxLayers]atomic.Bool
	plis    [maxLayers]atomic.Int64
}

// h264 is the H.264 profile test simulcast publishers send, Safari's.
var h264 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
	SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}

func (h *harness) newSimulcastPublisher(t *testing.T, codec webrtc.RTPCodecCapability) *simulcastPublisher {
	t.Helper()
	api := clientAPIMedia(t, webrtc.ConfigureSimulcastExtensionHeaders, func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	})
	p := &simulcastPublisher{
		codec:  codec,
		pc:     newClientPC(t, api),
		server: newServerPC(t, h.engine.NewPublisherPeerConnection),
		pubs:   make(chan *Publication, 1),
	}
	for i, rid := range ridOrder {
		tr, err := webrtc.NewTrackLocalStaticRTP(codec, "video", "camera", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		p.tracks[i] = tr
		if i == 0 {
			if p.sender, err = p.pc.AddTrack(tr); err != nil {
				t.Fatalf("AddTrack(%s) = %v", rid, err)
			}
		} else if err := p.sender.AddEncoding(tr); err != nil {
			t.Fatalf("AddEncoding(%s) = %v", rid, err)
		}
	}
	var once sync.Once
	p.server.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		pub, err := h.engine.Publish(tr, recv, p.server, publisherID)
		if errors.Is(err, ErrLayerAttached) {
			return
		}
		if err != nil {
			t.Errorf("Publish(rid %q) = %v", tr.RID(), err)
			return
		}
		once.Do(func() {
			t.Cleanup(pub.Close)
			p.pubs <- pub
		})
	})
	h.negotiatePublisher(t, p.pc, p.server)
	for _, x := range p.sender.GetParameters().HeaderExtensions {
		switch x.URI {
		case sdp.SDESMidURI:
			p.midID = uint8(x.ID)
		case sdp.SDESRTPStreamIDURI:
			p.ridID = uint8(x.ID)
		}
	}
	if p.midID == 0 || p.ridID == 0 {
		t.Fatalf("negotiated header extensions %+v; want mid and rid", p.sender.GetParameters().HeaderExtensions)
	}
	for _, tc := range p.pc.GetTransceivers() {
		if tc.Sender() == p.sender {
			p.mid = tc.Mid()
		}
	}
	for i, rid := range ridOrder {
		go p.readPLIs(i, rid)
	}
	return p
}

// readPLIs marks a keyframe due on layer i whenever the server asks.
func (p *simulcastPublisher) readPLIs(i int, rid string) {
	for {
		pkts, _, err := p.sender.ReadSimulcastRTCP(rid)
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			if _, ok := pkt.(*rtcp.PictureLossIndication); ok {
				p.keyNext[i].Store(true)
				p.plis[i].Add(1)
			}
		}
	}
}

// simulcastPayload is the payload of frame n of layer l in codec mime.
// VP8: a payload descriptor with a 15-bit picture ID and TL0PICIDX (each
// layer's own numbering, as encoders have) and the VP8 header's first
// byte; H.264: one NAL unit, IDR or not, its header and five bytes of
// slice. Then the layer, the source sequence number and filler derived
// from both.
func simulcastPayload(mime string, l int, n uint32, seq uint16, key bool) []byte {
	pic := uint16(n+uint32(l)*5000) & 0x7fff
	b := []byte{0x90, 0xc0, 0x80 | byte(pic>>8), byte(pic), byte(n) + byte(l*50), 0x01, byte(l), byte(seq >> 8), byte(seq)}
	if key {
		b[5] = 0x00
	}
	if mime == webrtc.MimeTypeH264 {
		copy(b, []byte{0x41, 1, 2, 3, 4, 5})
		if key {
			b[0] = 0x65
		}
	}
	for i := range 200 {
		b = append(b, byte(l*31+int(seq)+i))
	}
	return b
}

// checkSimulcastPayload fails unless b is a payload simulcastPayload made:
// its filler matches its layer and source sequence number.
func checkSimulcastPayload(t *testing.T, b []byte) (layer int, srcSeq uint16) {
	t.Helper()
	if len(b) != 9+200 {
		t.Fatalf("payload of %d bytes; want %d", len(b), 209)
	}
	layer, srcSeq = int(b[6]), binary.BigEndian.Uint16(b[7:9])
	for i := range 200 {
		if b[9+i] != byte(layer*31+int(srcSeq)+i) {
			t.Fatalf("payload of layer %d packet %d corrupt at byte %d", layer, srcSeq, 9+i)
		}
	}
	return layer, srcSeq
}

// sendFrame writes one single-packet frame on every layer: a keyframe
// where one is due (asked for by a PLI, or the first frame).
func (p *simulcastPublisher) sendFrame(t *testing.T) {
	t.Helper()
	n := p.frame
	p.frame++
	for l, tr := range p.tracks {
		if p.muted[l] {
			continue
		}
		seq := uint16(l*20000) + uint16(n)
		key := n == 0 || p.keyNext[l].Swap(false)
		h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(l)*1000000 + n*3000, Marker: true}
		if err := h.SetExtension(p.midID, []byte(p.mid)); err != nil {
			t.Fatal(err)
		}
		if err := h.SetExtension(p.ridID, []byte(ridOrder[l])); err != nil {
			t.Fatal(err)
		}
		if err := tr.WriteRTP(&rtp.Packet{Header: h, Payload: simulcastPayload(p.codec.MimeType, l, n, seq, key)}); err != nil {
			t.Fatalf("WriteRTP(layer %d) = %v", l, err)
		}
	}
}

// awaitTrack sends frames until sub has the forwarded track.
func (p *simulcastPublisher) awaitTrack(t *testing.T, sub *subscriber) *received {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		p.sendFrame(t)
		select {
		case r := <-sub.tracks:
			return r
		case <-deadline:
			t.Fatal("no track at the subscriber")
		default:
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// untilLayer sends frames, calling each after every one, until s forwards
// layer.
func (p *simulcastPublisher) untilLayer(t *testing.T, s *Subscription, layer int, each func()) {
	t.Helper()
	end := time.Now().Add(waitFor)
	for s.CurrentLayer() != layer {
		if time.Now().After(end) {
			t.Fatalf("subscriber on layer %d after %s; want %d", s.CurrentLayer(), waitFor, layer)
		}
		p.sendFrame(t)
		time.Sleep(time.Millisecond)
		each()
	}
}

// publication sends frames until the server has published the track with
// all three layers.
func (p *simulcastPublisher) publication(t *testing.T) *Publication {
	t.Helper()
	var pub *Publication
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for pub == nil || pub.Layers() < maxLayers {
		if time.Now().After(deadline) {
			t.Fatalf("simulcast publication within %s: %v", waitFor, pub)
		}
		p.sendFrame(t)
		select {
		case pub = <-p.pubs:
		default:
		}
		<-tick.C
	}
	return pub
}

// TestSimulcastSwitching: a Pion publisher sends three simulcast layers;
// a subscriber's layer is switched 100 times through the API. It sees one
// stream: sequence numbers without a gap (one packet lost on the way is
// NACKed and resent, from the layer it came from), timestamps never going
// back, VP8 picture IDs continuous, and each switch made at a keyframe
// the server asked the publisher for on the target layer. For VP8 and
// H.264.
func TestSimulcastSwitching(t *testing.T) {
	for _, codec := range []webrtc.RTPCodecCapability{vp8, h264} {
		t.Run(codec.MimeType, func(t *testing.T) { testSimulcastSwitching(t, codec) })
	}
}

func testSimulcastSwitching(t *testing.T, codec webrtc.RTPCodecCapability) {
	h := newHarness(t, Config{PLIInterval: 10 * time.Millisecond})
	pub := h.newSimulcastPublisher(t, codec)
	video := pub.publication(t)

	drop := &dropOnce{}
	// Replay protection off: the drop is after decryption (see
	// TestNACKRetransmission).
	sub := h.newSubscriber(t, clientAPI(t, false, drop))
	subs := sub.subscribe(t, video)
	s := subs[0]
	r := pub.awaitTrack(t, sub)

	var got []*rtp.Packet
	collect := func() {
		for {
			select {
			case pkt := <-r.pkts:
				got = append(got, pkt)
			default:
				return
			}
		}
	}
	switchTo := func(i, layer int) {
		s.SetMaxLayer(layer)
		pub.untilLayer(t, s, layer, collect)
		// A few frames on the new layer.
		for range 3 {
			pub.sendFrame(t)
			time.Sleep(time.Millisecond)
		}
		collect()
	}
	switchTo(0, 2)
	layersBefore := [maxLayers]int64{}
	for l := range layersBefore {
		layersBefore[l] = pub.plis[l].Load()
	}
	const switches = 100
	order := []int{0, 1, 2, 1, 0, 2}
	for i := range switches {
		if i == switches/2 {
			// Lose the next packet the subscriber gets: it is NACKed and
			// must come back from the layer it was sent from.
			collect()
			next := uint16(0)
			if len(got) > 0 {
				next = got[len(got)-1].SequenceNumber + 1
			}
			drop.seq.Store(uint32(next) + 1)
		}
		switchTo(i+1, order[i%len(order)])
	}
	for range 20 {
		pub.sendFrame(t)
		time.Sleep(time.Millisecond)
	}
	if !drop.dropped.Load() {
		t.Fatal("the test participant dropped no packet; want one dropped and resent")
	}
	waitCounter(t, h, "media_rtp_retransmitted_packets", "video", 1)
	time.Sleep(50 * time.Millisecond)
	collect()

	// Keyframe requests went to the layers switched to.
	for l := range maxLayers {
		if n := pub.plis[l].Load() - layersBefore[l]; n == 0 {
			t.Errorf("PLIs on layer %d during the switches = 0; want some", l)
		}
	}
	if n := h.layerCounter(t, "media_layer_switches", "0"); n < switches/3 {
		t.Errorf("media_layer_switches{layer=0} = %d; want at least %d", n, switches/3)
	}
	if n := h.counter(t, "media_layer_switch_keyframe_requests", ""); n < switches/2 {
		t.Errorf("media_layer_switch_keyframe_requests = %d; want at least %d", n, switches/2)
	}
	for l := range maxLayers {
		if n := h.layerCounter(t, "media_rtp_forwarded_layer_packets", string(rune('0'+l))); n == 0 {
			t.Errorf("media_rtp_forwarded_layer_packets{layer=%d} = 0", l)
		}
	}

	for l, seen := range checkSubscriberStream(t, got, 300, false, codec.MimeType == webrtc.MimeTypeVP8) {
		if !seen {
			t.Errorf("no packet of layer %d received", l)
		}
	}
}

// checkSubscriberStream checks what a subscriber received across layer
// switches: every payload intact, sequence numbers without a gap from
// first to last (the resent packet fills its own), timestamps rising and
// (vp8) picture IDs and TL0PICIDX continuous in sequence order, and each packet, the resent
// one too, from the layer its neighbours in the same run came from with
// the same sequence number offset (unless resumed: a resume starts a run
// on the same layer with another offset). It returns the layers seen.
func checkSubscriberStream(t *testing.T, got []*rtp.Packet, least int, resumed, vp8 bool) (layers [maxLayers]bool) {
	t.Helper()
	bySeq := map[uint16]*rtp.Packet{}
	media := 0
	for _, pkt := range got {
		if !isPadding(pkt) {
			checkSimulcastPayload(t, pkt.Payload)
			media++
		}
		bySeq[pkt.SequenceNumber] = pkt
	}
	if media < least {
		t.Fatalf("received %d media packets; want at least %d", media, least)
	}
	// Order by sequence number from the first received (no wrap: the
	// stream is far shorter than 32768 packets).
	first := got[0].SequenceNumber
	seqs := make([]int, 0, len(bySeq))
	for seq := range bySeq {
		seqs = append(seqs, int(uint16(seq-first)))
	}
	sort.Ints(seqs)
	// A bandwidth probe's padding takes sequence numbers of the stream:
	// it fills no gap of the media's, and the media on either side of it
	// is compared with each other; the sequence offset of a run changes
	// across it.
	var prev *rtp.Packet // the last media packet in sequence order
	padded := false      // padding since prev
	for i, d := range seqs {
		if d != i {
			t.Fatalf("sequence number %d missing (received %d packets)", first+uint16(i), len(got))
		}
		pkt := bySeq[first+uint16(d)]
		if isPadding(pkt) {
			padded = true
			continue
		}
		l, src := checkSimulcastPayload(t, pkt.Payload)
		layers[l] = true
		if prev == nil {
			prev, padded = pkt, false
			continue
		}
		if int32(pkt.Timestamp-prev.Timestamp) <= 0 {
			t.Fatalf("seq %d: timestamp %d after %d; want later (one frame per packet)", pkt.SequenceNumber, pkt.Timestamp, prev.Timestamp)
		}
		if vp8 {
			pp, pc := parseVP8(prev.Payload), parseVP8(pkt.Payload)
			if pc.pic != (pp.pic+1)&0x7fff {
				t.Fatalf("seq %d: picture ID %d after %d; want %d", pkt.SequenceNumber, pc.pic, pp.pic, (pp.pic+1)&0x7fff)
			}
			if pc.tl0 != pp.tl0+1 {
				t.Fatalf("seq %d: TL0PICIDX %d after %d; want %d", pkt.SequenceNumber, pc.tl0, pp.tl0, pp.tl0+1)
			}
		}
		// Within a run of one layer, outgoing minus source sequence
		// number is constant: a packet resent from the wrong layer, or
		// with the wrong number, breaks it.
		if pl, psrc := checkSimulcastPayload(t, prev.Payload); !resumed && !padded && pl == l &&
			pkt.SequenceNumber-src != prev.SequenceNumber-psrc {
			t.Fatalf("seq %d (layer %d source %d) and seq %d (layer %d source %d) disagree on the offset",
				pkt.SequenceNumber, l, src, prev.SequenceNumber, pl, psrc)
		}
		prev, padded = pkt, false
	}
	return layers
}

// isPadding reports whether pkt is padding only: a bandwidth probe.
func isPadding(pkt *rtp.Packet) bool { return pkt.Padding && len(pkt.Payload) == 0 }

// TestSimulcastPublicationEnds: a simulcast publication counts a track per
// layer, pauses and resumes a subscription (at a keyframe, with sequence
// numbers continuing), and ends, every layer's goroutines with it, when
// the publisher leaves; a further layer of the same receiver attaches to
// the publication instead of making another.
func TestSimulcastPublicationEnds(t *testing.T) {
	h := newHarness(t, Config{PLIInterval: 10 * time.Millisecond})
	pub := h.newSimulcastPublisher(t, vp8)
	video := pub.publication(t)
	if video.Layers() != maxLayers {
		t.Fatalf("Layers() = %d; want %d", video.Layers(), maxLayers)
	}
	sub := h.newSubscriber(t, clientAPI(t, true))
	s := sub.subscribe(t, video)[0]
	if got := h.engine.Tracks(); got != maxLayers+1 {
		t.Errorf("Tracks() = %d; want %d (three layers, one subscription)", got, maxLayers+1)
	}
	var r *received
	for r == nil {
		pub.sendFrame(t)
		select {
		case r = <-sub.tracks:
		case <-time.After(2 * time.Millisecond):
		}
	}
	closedWithin(t, s.FirstPacket(), "Subscription.FirstPacket")

	s.SetMaxLayer(0)
	pub.untilLayer(t, s, 0, func() {})
	s.Pause()
	if s.TargetLayer() != -1 || s.MaxLayer() != -1 {
		t.Errorf("paused: TargetLayer() = %d, MaxLayer() = %d; want -1, -1", s.TargetLayer(), s.MaxLayer())
	}
	for range 5 {
		pub.sendFrame(t)
	}
	if got := s.CurrentLayer(); got != -1 {
		t.Errorf("CurrentLayer() while paused = %d; want -1", got)
	}
	s.Resume()
	pub.untilLayer(t, s, 0, func() {})
	s.SetAllocatedLayer(-1)
	pub.sendFrame(t)
	if got := s.CurrentLayer(); got != -1 {
		t.Errorf("CurrentLayer() with no layer allocated = %d; want -1", got)
	}
	s.SetAllocatedLayer(2)
	pub.untilLayer(t, s, 0, func() {})
	for range 10 {
		pub.sendFrame(t)
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	var got []*rtp.Packet
	for len(r.pkts) > 0 {
		got = append(got, <-r.pkts)
	}
	checkSubscriberStream(t, got, 10, true, true)

	_ = pub.pc.Close()
	closedWithin(t, video.Done(), "Publication.Done after the publisher left")
	closedWithin(t, s.Done(), "Subscription.Done after the publisher left")
	if got := h.engine.Tracks(); got != 0 {
		t.Errorf("Tracks() after the publication ended = %d; want 0", got)
	}
}

// TestSimulcastLayerStops: when the publisher stops sending its top layer
// (as Chrome does on a weak uplink), a subscriber on it moves to the next
// layer down, and back up once the layer returns.
func TestSimulcastLayerStops(t *testing.T) {
	h := newHarness(t, Config{PLIInterval: 10 * time.Millisecond})
	pub := h.newSimulcastPublisher(t, vp8)
	video := pub.publication(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	s := sub.subscribe(t, video)[0]
	pub.untilLayer(t, s, 2, func() {})

	pub.muted[2] = true
	start := time.Now()
	pub.untilLayer(t, s, 1, func() {})
	// Not at once: the layer's last packet arrived a moment before start,
	// so the bound is loose.
	if took := time.Since(start); took < stoppedAfter/2 {
		t.Errorf("left the stopped layer after %s; want about %s", took, stoppedAfter)
	}
	pub.muted[2] = false
	pub.untilLayer(t, s, 2, func() {})
}
