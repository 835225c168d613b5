package sfu

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// closedWithin fails unless ch closes within waitFor.
func closedWithin(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("%s did not happen within %s", what, waitFor)
	}
}

// TestUnsubscribe: closing a subscription removes the track from the
// subscriber (its track ends after renegotiation) while the subscriber's
// other tracks keep flowing.
func TestUnsubscribe(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, audio := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	subs := sub.subscribe(t, video, audio)
	tracks := sub.awaitTracks(t, 2, pub.video, pub.audio)
	if got := h.engine.Tracks(); got != 4 {
		t.Errorf("Tracks() = %d; want 4 (two publications, two subscriptions)", got)
	}

	if err := subs[0].Close(); err != nil {
		t.Fatalf("Subscription.Close() = %v; want nil", err)
	}
	if err := subs[0].Close(); err != nil {
		t.Fatalf("second Subscription.Close() = %v; want nil", err)
	}
	if got := h.engine.Tracks(); got != 3 {
		t.Errorf("Tracks() after one Subscription.Close = %d; want 3", got)
	}
	closedWithin(t, subs[0].Done(), "Subscription.Done after Close")
	sub.negotiate(t)
	closedWithin(t, tracks[webrtc.RTPCodecTypeVideo].ended, "end of the removed video track at the subscriber")

	first := pub.audio.send(t, 50)
	checkContinuous(t, "audio", tracks[webrtc.RTPCodecTypeAudio].expect(t, first, 50, pub.audio.size))
}

// TestPublisherGone: when the publisher's track ends, the publication is
// done, every subscription is detached and new subscriptions are refused.
func TestPublisherGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone func(p *publisher, video, audio *Publication)
	}{
		{"server closes publisher connection", func(p *publisher, _, _ *Publication) { _ = p.server.Close() }},
		{"publisher client leaves", func(p *publisher, _, _ *Publication) { _ = p.pc.Close() }},
		{"publications closed", func(_ *publisher, video, audio *Publication) { video.Close(); audio.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			pub := h.newPublisher(t)
			video, audio := pub.publications(t)
			sub := h.newSubscriber(t, clientAPI(t, true))
			subs := sub.subscribe(t, video, audio)
			sub.awaitTracks(t, 2, pub.video, pub.audio)
			if got := h.counter(t, "media_nack_buffer_bytes", ""); got < ringStartBytes {
				t.Errorf("media_nack_buffer_bytes while video is published = %d; want at least %d", got, ringStartBytes)
			}

			tc.gone(pub, video, audio)
			for _, p := range []*Publication{video, audio} {
				closedWithin(t, p.Done(), p.Kind().String()+" Publication.Done")
			}
			if got := h.counter(t, "media_nack_buffer_bytes", ""); got != 0 {
				t.Errorf("media_nack_buffer_bytes after the publisher left = %d; want 0, its history freed", got)
			}
			for _, s := range subs {
				closedWithin(t, s.Done(), s.Publication().Kind().String()+" Subscription.Done")
			}
			for _, s := range sub.server.GetSenders() {
				if s.Track() != nil {
					t.Errorf("subscriber still sends track %s after its publisher left", s.Track().ID())
				}
			}
			if _, err := sub.conn.Subscribe(video); !errors.Is(err, ErrClosed) {
				t.Errorf("Subscribe() after the publisher left = %v; want ErrClosed", err)
			}
		})
	}
}

// TestSubscriberGone: when a subscriber's connection closes, its
// subscriptions are no longer written to, and a later Close is no error
// and empties the fan-out.
func TestSubscriberGone(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, audio := pub.publications(t)
	gone := h.newSubscriber(t, clientAPI(t, true))
	goneSubs := gone.subscribe(t, video, audio)
	gone.awaitTracks(t, 2, pub.video, pub.audio)
	stays := h.newSubscriber(t, clientAPI(t, true))
	stays.subscribe(t, video)
	r := stays.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]

	if err := gone.server.Close(); err != nil {
		t.Fatalf("server PeerConnection.Close() = %v", err)
	}
	deadline := time.After(waitFor)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for goneSubs[0].bound.Load() != nil || goneSubs[1].bound.Load() != nil {
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("%s after the subscriber left: video bound %v, audio bound %v; want both unbound",
				waitFor, goneSubs[0].bound.Load() != nil, goneSubs[1].bound.Load() != nil)
		}
	}
	for _, s := range goneSubs {
		if err := s.Close(); err != nil {
			t.Errorf("Subscription.Close() on a closed connection = %v; want nil", err)
		}
	}
	if n, m := len(*video.subs.Load()), len(*audio.subs.Load()); n != 1 || m != 0 {
		t.Errorf("fan-out sizes after Close = %d video, %d audio; want 1 (the remaining subscriber), 0", n, m)
	}
	first := pub.video.send(t, 30)
	checkContinuous(t, "video to the remaining subscriber", r.expect(t, first, 30, pub.video.size))
}

// TestCloseBeforeNegotiation: a subscription closed before its connection
// was ever negotiated ends at once and leaves the fan-out.
func TestCloseBeforeNegotiation(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	sub, err := subscriberConn(t, h.engine).Subscribe(video)
	if err != nil {
		t.Fatalf("Subscribe() = %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("Close() = %v; want nil", err)
	}
	closedWithin(t, sub.Done(), "Subscription.Done")
	if n := len(*video.subs.Load()); n != 0 {
		t.Errorf("fan-out size after Close = %d; want 0", n)
	}
}

// TestUnsubscribeOtherConnection: a connection refuses to end another
// connection's subscription, which keeps forwarding; its own connection
// ends it.
func TestUnsubscribeOtherConnection(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	own, other := subscriberConn(t, h.engine), subscriberConn(t, h.engine)
	sub, err := own.Subscribe(video)
	if err != nil {
		t.Fatalf("Subscribe() = %v", err)
	}
	if err := other.Unsubscribe(sub); !errors.Is(err, errNotOnConn) {
		t.Fatalf("Unsubscribe() on another connection = %v; want %v", err, errNotOnConn)
	}
	select {
	case <-sub.Done():
		t.Fatal("the subscription ended after another connection's Unsubscribe; want it forwarding")
	default:
	}
	if n := len(*video.subs.Load()); n != 1 {
		t.Errorf("fan-out size after a refused Unsubscribe = %d; want 1", n)
	}
	if err := own.Unsubscribe(sub); err != nil {
		t.Fatalf("Unsubscribe() on its own connection = %v; want nil", err)
	}
	closedWithin(t, sub.Done(), "Subscription.Done")
}

// TestSubscribeChurn: subscribers come and go while the publisher sends
// without pause; each one receives media, and the race detector and
// goleak watch the fan-out's copy-on-write and the bindings.
func TestSubscribeChurn(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, audio := pub.publications(t)
	pub.feed(t, 2*time.Millisecond, true)
	for round := range 4 {
		sub := h.newSubscriber(t, clientAPI(t, true))
		subs := sub.subscribe(t, video, audio)
		for range 2 {
			select {
			case r := <-sub.tracks:
				select {
				case <-r.pkts:
				case <-time.After(waitFor):
					t.Fatalf("round %d: no %s packet within %s", round, r.track.Kind(), waitFor)
				}
			case <-time.After(waitFor):
				t.Fatalf("round %d: tracks not received within %s", round, waitFor)
			}
		}
		for _, s := range subs {
			if err := s.Close(); err != nil {
				t.Fatalf("round %d: Close() = %v", round, err)
			}
		}
	}
	if n, m := len(*video.subs.Load()), len(*audio.subs.Load()); n != 0 || m != 0 {
		t.Errorf("fan-out sizes after churn = %d, %d; want 0, 0", n, m)
	}
}

// TestResubscribeReusesTransceiver: after an unsubscribe and a
// renegotiation, the next subscription on the same connection reuses the
// freed m-line, even for another codec, so a long meeting with churn does
// not grow the subscriber's SDP without bound.
func TestResubscribeReusesTransceiver(t *testing.T) {
	h := newHarness(t, Config{})
	vp8Pub := h.newPublisher(t)
	first, _ := vp8Pub.publications(t)
	h264 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	h264Pub := h.newPublisherWith(t, h264)
	second, _ := h264Pub.publications(t)

	sub := h.newSubscriber(t, clientAPI(t, true))
	subs := sub.subscribe(t, first)
	sub.awaitTracks(t, 1, vp8Pub.video)
	if err := subs[0].Close(); err != nil {
		t.Fatal(err)
	}
	sub.negotiate(t)

	again := sub.subscribe(t, second)
	r := sub.awaitTracks(t, 1, h264Pub.video)[webrtc.RTPCodecTypeVideo]
	if again[0].bound.Load() == nil {
		t.Errorf("H.264 subscription on the reused m-line is unbound; want bound (codec negotiated)")
	}
	from := h264Pub.video.send(t, 20)
	checkContinuous(t, "h264 video", r.expect(t, from, 20, h264Pub.video.size))
	if n := len(sub.server.GetTransceivers()); n != 1 {
		t.Errorf("subscriber transceivers after unsubscribe and resubscribe = %d; want 1 (reused)", n)
	}
}

// TestPublisherRemovesTrack: a publisher that stops one track (removeTrack
// and a new offer) ends that publication and its subscriptions; its other
// track keeps flowing.
func TestPublisherRemovesTrack(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, audio := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	subs := sub.subscribe(t, video, audio)
	tracks := sub.awaitTracks(t, 2, pub.video, pub.audio)

	if err := pub.pc.RemoveTrack(pub.video.sender); err != nil {
		t.Fatalf("RemoveTrack(video) = %v", err)
	}
	negotiate(t, pub.pc, pub.server)
	closedWithin(t, video.Done(), "video Publication.Done")
	closedWithin(t, subs[0].Done(), "video Subscription.Done")
	select {
	case <-audio.Done():
		t.Fatal("audio publication ended with the video track; want it live")
	default:
	}
	first := pub.audio.send(t, 20)
	checkContinuous(t, "audio", tracks[webrtc.RTPCodecTypeAudio].expect(t, first, 20, pub.audio.size))
}
