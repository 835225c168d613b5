package sfu

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// transportCipher is the SRTP profile pc's DTLS transport negotiated.
func transportCipher(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	for _, s := range pc.GetStats() {
		if ts, ok := s.(webrtc.TransportStats); ok && ts.SRTPCipher != "" {
			return ts.SRTPCipher
		}
	}
	t.Fatal("GetStats() has no transport with an SRTP cipher")
	return ""
}

// pairBytesSent is what went through Pion's ICE connection on pc's
// selected pair: DTLS, RTCP, ICE checks and whatever RTP Pion's own
// write path carried. (Not GetStats, whose read of the connection's
// state races with Pion closing it when the peer's DTLS closes.)
// Right after an ICE restart the agent may not have the pair yet.
func pairBytesSent(t *testing.T, pc *webrtc.PeerConnection) uint64 {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		s, ok := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePairStats()
		if ok {
			return s.BytesSent
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetSelectedCandidatePairStats() found no selected pair within %s", waitFor)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDirectWrite: on a subscriber connection where the server is the
// DTLS server (the subscriber answers as the client, as browsers and Pion
// do), forwarded media is encrypted with keys derived from the handshake
// and written to the socket by the directWriter, not through Pion's ICE
// connection: the subscriber decrypts every packet, while the selected pair's byte
// count in Pion's ICE agent grows by far less than the media sent. The
// server's SRTP profile preference (AES-128-GCM) wins over Pion's
// client's (AES-256-GCM first).
func TestDirectWrite(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, audio := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, video, audio)
	tracks := sub.awaitTracks(t, 2, pub.video, pub.audio)

	// The subscriber's side: the server's GetStats would race with Pion
	// closing it when the subscriber's DTLS closes at the end.
	if got, want := transportCipher(t, sub.pc), "SRTP_AEAD_AES_128_GCM"; got != want {
		t.Errorf("subscriber connection SRTP cipher = %s; want %s", got, want)
	}
	const n = 400
	before := pairBytesSent(t, sub.server)
	firstVideo := pub.video.send(t, n)
	firstAudio := pub.audio.send(t, n)
	checkContinuous(t, "video", tracks[webrtc.RTPCodecTypeVideo].expect(t, firstVideo, n, pub.video.size))
	checkContinuous(t, "audio", tracks[webrtc.RTPCodecTypeAudio].expect(t, firstAudio, n, pub.audio.size))
	media := uint64(n * (pub.video.size + pub.audio.size))
	if sent := pairBytesSent(t, sub.server) - before; sent > media/10 {
		t.Errorf("Pion's ICE connection sent %d bytes while %d bytes of media were forwarded; want the media written directly (under %d)", sent, media, media/10)
	}
}

// TestDirectWriteOffAsDTLSClient: a subscriber that answers as the DTLS
// server leaves the server without its ServerHello, so without the keys:
// its media goes through Pion's write path, whole.
func TestDirectWriteOffAsDTLSClient(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	sub := h.newSubscriber(t, clientAPIAnswering(t, webrtc.DTLSRoleServer))
	sub.subscribe(t, video)
	r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]

	const n = 200
	before := pairBytesSent(t, sub.server)
	first := pub.video.send(t, n)
	checkContinuous(t, "video", r.expect(t, first, n, pub.video.size))
	if sent, media := pairBytesSent(t, sub.server)-before, uint64(n*pub.video.size); sent < media {
		t.Errorf("Pion's ICE connection sent %d bytes while %d bytes of media were forwarded; want all of it through Pion", sent, media)
	}
}

// extended is a header with a transport-cc extension, as the fan-out
// stamps.
func extended(t *testing.T) rtp.Header {
	h := rtp.Header{Version: 2, SSRC: 5}
	if err := h.SetExtension(3, []byte{0, 1}); err != nil {
		t.Fatalf("SetExtension() = %v", err)
	}
	return h
}

// TestMarshalRTP: the direct path marshals a header, payload and padding
// as rtp.Packet does.
func TestMarshalRTP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       rtp.Header
		payload []byte
	}{
		{"plain", rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, Timestamp: 9, SSRC: 5}, []byte{1, 2, 3}},
		{"padding only", rtp.Header{Version: 2, Padding: true, PaddingSize: 200, SSRC: 5}, nil},
		{"payload and padding", rtp.Header{Version: 2, Padding: true, PaddingSize: 3, SSRC: 5}, []byte{9, 9}},
		{"extension", extended(t), []byte{4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := (&rtp.Packet{Header: tc.h, Payload: tc.payload, PaddingSize: tc.h.PaddingSize}).Marshal()
			if err != nil {
				t.Fatalf("Marshal() = %v", err)
			}
			buf := make([]byte, directBufSize)
			for i := range buf {
				buf[i] = 0xff // a reused buffer's leftovers must not show
			}
			n, err := marshalRTP(buf, &tc.h, tc.payload)
			if err != nil || string(buf[:n]) != string(want) {
				t.Errorf("marshalRTP() = %x, %v; want %x", buf[:n], err, want)
			}
		})
	}
	if _, err := marshalRTP(make([]byte, 20), &rtp.Header{Version: 2}, make([]byte, 100)); err == nil {
		t.Error("marshalRTP(100-byte payload into 20 bytes) = nil error; want one")
	}
}

// TestDirectWriteFollowsICERestart: a subscriber that restarts ICE
// gathers new sockets, so the server's selected pair gets a new remote
// address; the direct path follows it, and media keeps arriving, still
// not through Pion's ICE connection.
func TestDirectWriteFollowsICERestart(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, video)
	r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
	old := remoteOf(t, sub.server)

	gathered := webrtc.GatheringCompletePromise(sub.server)
	if _, err := sub.conn.RestartOffer(); err != nil {
		t.Fatalf("RestartOffer() = %v", err)
	}
	<-gathered
	answer := answerTo(t, sub.pc, *sub.server.LocalDescription(), func(sdp string) string { return sdp })
	if err := sub.conn.Answer(answer); err != nil {
		t.Fatalf("Answer(restart) = %v", err)
	}
	deadline := time.Now().Add(waitFor)
	for remoteOf(t, sub.server) == old {
		if time.Now().After(deadline) {
			t.Fatalf("selected pair's remote still %s %s after the restart", old, waitFor)
		}
		pub.video.send(t, 1)
	}

	const n = 200
	before := pairBytesSent(t, sub.server)
	first := pub.video.send(t, n)
	r.expect(t, first, n, pub.video.size)
	if sent, media := pairBytesSent(t, sub.server)-before, uint64(n*pub.video.size); sent > media/10 {
		t.Errorf("after the restart Pion's ICE connection sent %d bytes of %d bytes of media; want it written directly (under %d)", sent, media, media/10)
	}
}

// remoteOf is the remote address of pc's selected pair, "" with none.
func remoteOf(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", pair.Remote.Address, pair.Remote.Port)
}

// TestDirectWriteCryptex: a subscriber whose answer negotiates RTP header
// extension encryption (RFC 9335 Cryptex, Pion's default) gets the
// forwarded packets' extensions encrypted on the wire, as Pion's path
// would send them; one that declines gets them in the clear. Read at the
// subscriber's socket: the extension's profile says which (0xC0DE
// encrypted, 0xBEDE clear).
func TestDirectWriteCryptex(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  webrtc.RTPHeaderEncryptionPolicy
		profile uint16
	}{
		{"negotiated", webrtc.RTPHeaderEncryptionPolicyNegotiate, 0xC0DE},
		{"declined", webrtc.RTPHeaderEncryptionPolicyDisable, 0xBEDE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			pub := h.newPublisher(t)
			video, _ := pub.publications(t)
			sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			sniff := &profileSniffer{UDPConn: sock, seen: map[uint16]int{}}
			mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sniff})
			t.Cleanup(func() { _ = mux.Close() })
			api := clientAPIWith(t, func(se *webrtc.SettingEngine) {
				se.SetICEUDPMux(mux)
				se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
			})
			sub := h.newSubscriberConfig(t, api, webrtc.Configuration{RTPHeaderEncryptionPolicy: tc.policy})
			sub.subscribe(t, video)
			r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]

			const n = 100
			before := pairBytesSent(t, sub.server)
			first := pub.video.send(t, n)
			checkContinuous(t, "video", r.expect(t, first, n, pub.video.size))
			if sent, media := pairBytesSent(t, sub.server)-before, uint64(n*pub.video.size); sent > media/10 {
				t.Errorf("Pion's ICE connection sent %d bytes of %d bytes of media; want it written directly", sent, media)
			}
			seen := sniff.profiles()
			if seen[tc.profile] < n || len(seen) != 1 {
				t.Errorf("header extension profiles on the wire = %v; want only %#x, at least %d times", seen, tc.profile, n)
			}
		})
	}
}

// profileSniffer counts the header extension profiles of the RTP packets
// a client's socket reads.
type profileSniffer struct {
	*net.UDPConn
	mu   sync.Mutex
	seen map[uint16]int
}

func (s *profileSniffer) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := s.UDPConn.ReadFrom(p)
	// RTP (RFC 7983: first byte 128 to 191), not RTCP (payload type
	// 192 to 223 with the marker bit), with an extension (the X bit).
	if n >= 16 && p[0]>>6 == 2 && (p[1] < 192 || p[1] > 223) && p[0]&0x10 != 0 {
		at := 12 + 4*int(p[0]&0x0f)
		if n >= at+2 {
			s.mu.Lock()
			s.seen[binary.BigEndian.Uint16(p[at:])]++
			s.mu.Unlock()
		}
	}
	return n, addr, err
}

func (s *profileSniffer) profiles() map[uint16]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[uint16]int, len(s.seen))
	for k, v := range s.seen {
		m[k] = v
	}
	return m
}

// TestDirectWriteKeepsRolloverInStep: for an AEAD profile (the writer's
// own sealing) and for one that is not (its Pion context, told each
// packet's rollover count), a stream whose path moves between
// the direct writer and Pion's (an ICE restart between UDP and ICE-TCP)
// for stretches longer than half the sequence space, across three
// rollovers of its sequence numbers, reaches the subscriber decryptable
// to the last packet: each path's SRTP context counts the rollovers
// right when it takes the stream over. The stream starts before Pion's
// SRTP session does (which drops what it is given until then), across
// the first rollover: nothing reaches the subscriber before, and every
// packet after; and the stream is bound again under its SSRC past a
// rollover. (Pion's path is a context of the same keys writing to the
// same address, as Pion's session would.)
func TestDirectWriteKeepsRolloverInStep(t *testing.T) {
	for name, k := range map[string]testKeys{"aead": gcmTestKeys, "aes-cm": cmTestKeys} {
		t.Run(name, func(t *testing.T) { keepsRolloverInStep(t, k) })
	}
}

func keepsRolloverInStep(t *testing.T, k testKeys) {
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn := newBatchConn(send, func(int) {})
	defer conn.Close()
	to := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	d := newDirectTrackKeys(t, conn, to, k)
	if (d.w.seal.Load() != nil) != (k.profile != srtp.ProtectionProfileAes128CmHmacSha1_80) {
		t.Fatalf("%s: own sealing %t; want it for the AEAD profiles only", k.profile, d.w.seal.Load() != nil)
	}
	subscriber, err := srtp.CreateContext(k.key, k.salt, k.profile)
	if err != nil {
		t.Fatal(err)
	}
	// Pion's session starts 2000 packets in; then direct, Pion's and
	// direct again, 50000 packets each; from 1000 packets before the
	// first rollover.
	const pionStarts, stretch = 2000, 50000
	const packets = pionStarts + 3*stretch
	payload := make([]byte, 20)
	buf := make([]byte, 1500)
	seq := uint16(65536 - 1000)
	d.pionOff = true
	for i := range packets {
		switch i {
		case pionStarts:
			d.pionOff = false
		case pionStarts + stretch:
			d.w.route.Store(nil)
		case pionStarts + 2*stretch:
			d.w.route.Store(&to)
		case pionStarts + 2*stretch + stretch/2: // a rollover after Pion's start
			d.rebind()
		}
		h := rtp.Header{Version: 2, SSRC: 7, SequenceNumber: seq, Timestamp: uint32(i) * 3000, PayloadType: 96}
		seq++
		if _, err := d.WriteRTP(&h, payload); err != nil {
			t.Fatalf("packet %d: WriteRTP() = %v", i, err)
		}
		if i < pionStarts {
			continue
		}
		_ = recv.SetReadDeadline(time.Now().Add(waitFor))
		n, err := recv.Read(buf)
		if err != nil {
			t.Fatalf("packet %d (sequence number %d): %v", i, h.SequenceNumber, err)
		}
		var got rtp.Header
		if _, err := subscriber.DecryptRTP(buf[n:n], buf[:n], &got); err != nil {
			t.Fatalf("packet %d (sequence number %d; Pion's session started at %d, the path moved at %d and %d): the subscriber cannot decrypt it: %v",
				i, h.SequenceNumber, pionStarts, pionStarts+stretch, pionStarts+2*stretch, err)
		}
		if got.SequenceNumber != h.SequenceNumber {
			t.Fatalf("packet %d: sequence number %d; want %d (one sent before Pion's session started?)", i, got.SequenceNumber, h.SequenceNumber)
		}
	}
	if direct, want := packets-pionStarts-d.viaPion, 2*stretch-2*stretch/syncEvery-3; direct < want || direct >= 2*stretch {
		t.Errorf("%d of %d packets written directly; want %d to %d (one in %d goes Pion's way)", direct, packets-pionStarts, want, 2*stretch-1, syncEvery)
	}
}

// A subscription writes its forwarded packets straight to the
// directStream bound under its binding's SSRC at the bottom of its
// connection's chain, not through the track's writer (Pion's wrapper);
// once that stream is unbound, through the track's writer again.
func TestSubscriptionWritesToItsStream(t *testing.T) {
	p, peers := socketPublication(t, 1)
	s := (*p.subs.Load())[0]
	d := s.bound.Load().w.(*directTrack)
	pkt := videoPacket(t)
	var h rtp.Header
	forward := func(seq uint16) {
		t.Helper()
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		p.forward(p.layer(0), pkt, &h)
		if got := decrypt(t, receive(t, peers[0], 1)[0]).SequenceNumber; got != seq {
			t.Fatalf("received sequence number %d; want %d", got, seq)
		}
	}
	for seq := range uint16(3) {
		forward(seq)
	}
	if ds := s.stream.Load(); ds == nil || ds != d.w.stream(d.ssrc) {
		t.Fatalf("the subscription's stream = %p; want the one bound under SSRC %d, %p", ds, d.ssrc, d.w.stream(d.ssrc))
	}
	if d.viaTrack != 0 {
		t.Fatalf("%d packets went through the track's writer; want none", d.viaTrack)
	}
	d.ic.UnbindLocalStream(&interceptor.StreamInfo{SSRC: d.ssrc})
	forward(3)
	if d.viaTrack != 1 || s.stream.Load() != nil {
		t.Fatalf("after the stream's unbinding: %d packets through the track's writer, stream %p; want 1, none", d.viaTrack, s.stream.Load())
	}
}
