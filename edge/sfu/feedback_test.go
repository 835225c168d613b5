package sfu

import (
	"encoding/binary"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// awaitPLI waits for the next PLI at the publisher.
func awaitPLI(t *testing.T, plis <-chan time.Time, what string) time.Time {
	t.Helper()
	select {
	case at := <-plis:
		return at
	case <-time.After(waitFor):
		t.Fatalf("%s: no PLI reached the publisher within %s", what, waitFor)
		return time.Time{}
	}
}

// TestKeyframeRequests: each subscriber that joins makes the publisher
// get a PLI (so its video starts at once), and a burst of PLIs from a
// subscriber reaches the publisher as at most one per PLIInterval.
func TestKeyframeRequests(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	plis := pub.readPLIs(t)
	video, _ := pub.publications(t)

	first := h.newSubscriber(t, clientAPI(t, true))
	first.subscribe(t, video)
	firstTrack := first.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
	t1 := awaitPLI(t, plis, "first subscriber")

	late := h.newSubscriber(t, clientAPI(t, true))
	late.subscribe(t, video)
	late.awaitTracks(t, 1, pub.video)
	t2 := awaitPLI(t, plis, "late subscriber")
	if gap := t2.Sub(t1); gap < 400*time.Millisecond {
		t.Errorf("late subscriber's PLI came %s after the first; want at least the 500ms interval", gap)
	}

	throttledBefore := h.counter(t, "media_rtcp_plis_throttled", "video")
	const burst = 20
	ssrc := uint32(firstTrack.track.SSRC())
	start := time.Now()
	for range burst {
		if err := first.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
			t.Fatalf("WriteRTCP(PLI) = %v", err)
		}
	}
	// Count what reaches the publisher over a bounded window: the burst may
	// produce one PLI at once and one held to the end of the interval.
	var arrivals []time.Time
	window := time.After(1200 * time.Millisecond)
collect:
	for {
		select {
		case at := <-plis:
			arrivals = append(arrivals, at)
		case <-window:
			break collect
		}
	}
	if len(arrivals) < 1 || len(arrivals) > 3 {
		t.Fatalf("PLIs at the publisher in %s after a burst of %d = %d; want 1 to 3", time.Since(start), burst, len(arrivals))
	}
	for i := 1; i < len(arrivals); i++ {
		if gap := arrivals[i].Sub(arrivals[i-1]); gap < 400*time.Millisecond {
			t.Errorf("PLIs %d and %d came %s apart; want at least the 500ms interval", i-1, i, gap)
		}
	}
	waitCounter(t, h, "media_rtcp_plis_throttled", "video", throttledBefore+burst-2)
}

// waitCounter polls a counter until it reaches want.
func waitCounter(t *testing.T, h *harness, name, kind string, want int64) {
	t.Helper()
	deadline := time.After(waitFor)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		got := h.counter(t, name, kind)
		if got >= want {
			return
		}
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("%s{kind=%s} = %d after %s; want at least %d", name, kind, got, waitFor, want)
		}
	}
}

// dropOnce is a test participant's interceptor that loses the first copy
// of one video packet after decryption, as if the network had dropped it:
// the participant's own NACK generator then asks for it. The packet is
// the first media packet from the sequence number set on: a bandwidth
// probe's padding may take that number.
type dropOnce struct {
	interceptor.NoOp
	seq     atomic.Uint32 // sequence number to drop, + 1 (0 = none yet)
	dropped atomic.Bool
}

func (d *dropOnce) NewInterceptor(string) (interceptor.Interceptor, error) { return d, nil }

func (d *dropOnce) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if !strings.HasPrefix(info.MimeType, "video/") {
		return r
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attrs, err := r.Read(b, a)
			if err != nil || n < 4 {
				return n, attrs, err
			}
			target := d.seq.Load()
			seq := binary.BigEndian.Uint16(b[2:4])
			if target == 0 || d.dropped.Load() || int16(seq-uint16(target-1)) < 0 {
				return n, attrs, nil
			}
			var p rtp.Packet
			if p.Unmarshal(b[:n]) == nil && p.Padding && len(p.Payload) == 0 {
				return n, attrs, nil // padding: the media packet is later
			}
			if d.dropped.CompareAndSwap(false, true) {
				continue
			}
			return n, attrs, nil
		}
	})
}

// TestNACKRetransmission: a subscriber that loses a packet NACKs it and
// gets it again from the publication's buffer; a NACK for a packet long
// gone is counted as a miss.
func TestNACKRetransmission(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)

	drop := &dropOnce{}
	// Replay protection off: the drop happens after decryption, so the
	// resent copy would otherwise look like a replay. On a real network
	// the first copy never reaches SRTP.
	sub := h.newSubscriber(t, clientAPI(t, false, drop))
	sub.subscribe(t, video)
	r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]

	const n = 50
	next := pub.video.next
	drop.seq.Store(uint32(pub.video.baseSeq+uint16(next+10)) + 1)
	first := pub.video.send(t, n)
	seqs := r.expect(t, first, n, pub.video.size)
	checkContinuous(t, "video", seqs)
	if !drop.dropped.Load() {
		t.Fatal("the test participant dropped no packet; want one dropped and resent")
	}
	// The resend is counted once its NACK is handled, which may
	// be after the resent packet has arrived.
	waitCounter(t, h, "media_rtp_retransmitted_packets", "video", 1)

	missesBefore := h.counter(t, "media_rtp_nack_misses", "video")
	gone := &rtcp.TransportLayerNack{MediaSSRC: uint32(r.track.SSRC()),
		Nacks: []rtcp.NackPair{{PacketID: pub.video.baseSeq - 2000}}}
	if err := sub.pc.WriteRTCP([]rtcp.Packet{gone}); err != nil {
		t.Fatalf("WriteRTCP(NACK) = %v", err)
	}
	waitCounter(t, h, "media_rtp_nack_misses", "video", missesBefore+1)
}

// TestNACKRateBound: a subscriber that NACKs a hundred buffered packets at
// once gets only its retransmission rate's burst resent; the rest are
// counted as limited. The limiter refills while the NACK is handled, and
// on a loaded machine (under -race) resending can take seconds, so what
// may be resent is the burst plus the rate times the time the handling
// took, measured around it: still far below the hundred asked for.
func TestNACKRateBound(t *testing.T) {
	const hz = 10
	h := newHarness(t, Config{RetransmitRate: hz})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, video)
	r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
	first := pub.video.send(t, 100)
	r.expect(t, first, 100, pub.video.size)

	counts := func() (resent, limited, missed int64) {
		return h.counter(t, "media_rtp_retransmitted_packets", "video"),
			h.counter(t, "media_rtp_retransmits_limited", "video"),
			h.counter(t, "media_rtp_nack_misses", "video")
	}
	resent0, limited0, missed0 := counts()
	var pairs []rtcp.NackPair
	for i := uint16(0); i < 100; i += 17 {
		pairs = append(pairs, rtcp.NackPair{PacketID: pub.video.baseSeq + uint16(first) + i, LostPackets: 0xffff})
	}
	const asked = 102 // 6 pairs of 17; the last 2 were never sent
	nack := &rtcp.TransportLayerNack{MediaSSRC: uint32(r.track.SSRC()), Nacks: pairs}
	start := time.Now()
	if err := sub.pc.WriteRTCP([]rtcp.Packet{nack}); err != nil {
		t.Fatalf("WriteRTCP(NACK) = %v", err)
	}
	var resent, limited, missed int64
	for deadline := time.Now().Add(waitFor); resent+limited+missed < asked; {
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d resent, %d limited, %d missed of the %d packets asked for", waitFor, resent, limited, missed, asked)
		}
		time.Sleep(10 * time.Millisecond)
		r, l, m := counts()
		resent, limited, missed = r-resent0, l-limited0, m-missed0
	}
	took := time.Since(start)
	allowed := hz + int64(took.Seconds()*hz) + 1
	t.Logf("a NACK of %d: %d resent, %d limited, %d missed, handled within %s", asked, resent, limited, missed, took.Round(time.Millisecond))
	if resent < hz || resent > allowed {
		t.Errorf("packets resent for a NACK of %d = %d; want the burst of %d, and at most %d after %s", asked, resent, hz, allowed, took.Round(time.Millisecond))
	}
	if missed != asked-100 {
		t.Errorf("packets missed = %d; want the %d never sent", missed, asked-100)
	}
}

// TestLateRetransmissionAccepted: a publisher's retransmission that comes
// 200 packets after the original should have (half a second of 400
// packets/s video, a long round trip) still reaches subscribers: Pion's
// default SRTP replay window of 64 would drop it.
func TestLateRetransmissionAccepted(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	// A browser-sized replay window on the subscriber too.
	sub := h.newSubscriber(t, clientAPIWith(t, func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetSRTPReplayProtectionWindow(1024)
	}))
	sub.subscribe(t, video)
	r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]

	first := pub.video.send(t, 1)
	late := *pub.video // holds packet first+1 back
	pub.video.next++
	pub.video.send(t, 200)
	late.send(t, 1)
	checkContinuous(t, "video", r.expect(t, first, 202, pub.video.size))
}

// TestNACKsToPublisherBounded: a packet the publisher never sends is asked
// for, but at most maxNacksPerPacket times.
func TestNACKsToPublisherBounded(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	pub.publications(t)
	nacked := make(chan struct{}, 100)
	missing := pub.video.baseSeq + uint16(pub.video.next) + 5
	go func() {
		for {
			pkts, _, err := pub.video.sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				if n, ok := pkt.(*rtcp.TransportLayerNack); ok && nackAsks(n, missing) {
					nacked <- struct{}{}
				}
			}
		}
	}()
	pub.video.send(t, 5)
	pub.video.next++ // never sent
	// Keep sending, slowly enough that the gap stays in Pion's 512-packet
	// log, over a window of 20 NACK ticks.
	stop := time.After(2 * time.Second)
	pace := time.NewTicker(5 * time.Millisecond)
	defer pace.Stop()
	count := 0
	for sending := true; sending; {
		select {
		case <-nacked:
			count++
		case <-pace.C:
			pub.video.send(t, 1)
		case <-stop:
			sending = false
		}
	}
	for len(nacked) > 0 {
		<-nacked
		count++
	}
	if count < 1 || count > maxNacksPerPacket {
		t.Fatalf("NACKs for the missing packet over 2s = %d; want 1 to %d", count, maxNacksPerPacket)
	}
}

// nackAsks reports whether n asks for seq.
func nackAsks(n *rtcp.TransportLayerNack, seq uint16) bool {
	for _, p := range n.Nacks {
		for _, s := range p.PacketList() {
			if s == seq {
				return true
			}
		}
	}
	return false
}
