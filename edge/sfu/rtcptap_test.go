package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// TestSubscriberRTCPTapped: a subscriber's RTCP reaches its connection
// from the socket's reader (the tap), not through Pion's receive
// goroutines, but for about one datagram a second left to Pion for its
// ICE agent; and it does what it did: its keyframe requests reach the
// publisher, its transport-wide feedback makes an estimate, and the
// connection stays up.
func TestSubscriberRTCPTapped(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	plis := pub.readPLIs(t)
	video, _ := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, video)
	r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
	awaitPLI(t, plis, "subscriber's start")
	pub.feed(t, 5*time.Millisecond, true) // the subscriber's feedback follows the media

	tap := &sub.conn.direct.tap
	deadline := time.Now().Add(waitFor)
	for tap.took.Load() < 20 || tap.left.Load() < 2 || sub.conn.Estimate() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("within %s: %d RTCP datagrams tapped, %d left to Pion, estimate %.0f bit/s; want 20 or more, 2 or more, and an estimate",
				waitFor, tap.took.Load(), tap.left.Load(), sub.conn.Estimate())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Pion's path is left what has no transport-wide feedback when it
	// can: the estimate comes from the feedback the tap delivered.
	took, left := tap.took.Load(), tap.left.Load()
	if took < 5*left {
		t.Errorf("%d RTCP datagrams tapped, %d left to Pion; want most tapped", took, left)
	}

	// A keyframe request, after the throttle's hold of the last one.
	time.Sleep(600 * time.Millisecond)
	for len(plis) > 0 {
		<-plis
	}
	if err := sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(r.track.SSRC())}}); err != nil {
		t.Fatalf("WriteRTCP(PLI) = %v", err)
	}
	awaitPLI(t, plis, "a keyframe request")
	if s := sub.server.ICEConnectionState(); s != webrtc.ICEConnectionStateConnected {
		t.Errorf("server's ICE state %s; want connected", s)
	}
}
