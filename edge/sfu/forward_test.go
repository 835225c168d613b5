package sfu

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// TestForwardToTwoSubscribers: a publisher sends VP8 and Opus; two
// subscribers each receive every packet with its payload intact and
// continuous sequence numbers, with the publisher's id as stream id and
// the publication's id as track id.
func TestForwardToTwoSubscribers(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, audio := pub.publications(t)

	subs := []*subscriber{
		h.newSubscriber(t, clientAPI(t, true)),
		h.newSubscriber(t, clientAPI(t, true)),
	}
	var tracks []map[webrtc.RTPCodecType]*received
	for _, s := range subs {
		subscriptions := s.subscribe(t, video, audio)
		tracks = append(tracks, s.awaitTracks(t, 2, pub.video, pub.audio))
		for _, sub := range subscriptions {
			closedWithin(t, sub.FirstPacket(), sub.Publication().Kind().String()+" Subscription.FirstPacket")
		}
	}

	const n = 300
	firstVideo := pub.video.send(t, n)
	firstAudio := pub.audio.send(t, n)

	for i, byKind := range tracks {
		for _, tc := range []struct {
			pub   *Publication
			first uint32
			size  int
		}{
			{video, firstVideo, pub.video.size},
			{audio, firstAudio, pub.audio.size},
		} {
			r := byKind[tc.pub.Kind()]
			if r.track.StreamID() != publisherID {
				t.Errorf("subscriber %d %s StreamID() = %q; want %q", i, tc.pub.Kind(), r.track.StreamID(), publisherID)
			}
			if r.track.ID() != tc.pub.ID() {
				t.Errorf("subscriber %d %s ID() = %q; want %q", i, tc.pub.Kind(), r.track.ID(), tc.pub.ID())
			}
			seqs := r.expect(t, tc.first, n, tc.size)
			checkContinuous(t, tc.pub.Kind().String(), seqs)
		}
	}
	for _, c := range []struct {
		name, kind string
		min        int64
	}{
		{"media_rtp_received_packets", "video", n},
		{"media_rtp_received_packets", "audio", n},
		{"media_rtp_forwarded_packets", "video", 2 * n},
		{"media_rtp_forwarded_packets", "audio", 2 * n},
		{"media_rtp_forwarded_bytes", "video", 2 * n * int64(pub.video.size)},
	} {
		if got := h.counter(t, c.name, c.kind); got < c.min {
			t.Errorf("%s{kind=%s} = %d; want at least %d", c.name, c.kind, got, c.min)
		}
	}
}

// TestForwardVideoCodecs: VP8, VP9 and H.264 publishers are forwarded in
// their own codec, to a subscriber that negotiates the same codec and
// profile, with every packet intact.
func TestForwardVideoCodecs(t *testing.T) {
	for _, c := range []webrtc.RTPCodecCapability{
		vp8,
		{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"},
		{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"},
	} {
		t.Run(c.MimeType+" "+c.SDPFmtpLine, func(t *testing.T) {
			h := newHarness(t, Config{})
			pub := h.newPublisherWith(t, c)
			video, _ := pub.publications(t)
			if _, ok := matchCodec(c, []webrtc.RTPCodecParameters{video.Codec()}); !ok {
				t.Fatalf("Publication.Codec() = %s %q; want %s %q", video.Codec().MimeType, video.Codec().SDPFmtpLine, c.MimeType, c.SDPFmtpLine)
			}
			sub := h.newSubscriber(t, clientAPI(t, true))
			sub.subscribe(t, video)
			r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
			got := r.track.Codec().RTPCodecCapability
			if _, ok := matchCodec(c, []webrtc.RTPCodecParameters{{RTPCodecCapability: got}}); !ok {
				t.Fatalf("subscriber codec = %s %q; want %s %q", got.MimeType, got.SDPFmtpLine, c.MimeType, c.SDPFmtpLine)
			}
			first := pub.video.send(t, 50)
			checkContinuous(t, c.MimeType, r.expect(t, first, 50, pub.video.size))
		})
	}
}

// TestMixedCodecsOnOneConnection: a subscriber receives a VP8 publisher
// (a Chrome) and, added later on the same connection, an H.264 publisher
// (a Safari): each track arrives in its own codec.
func TestMixedCodecsOnOneConnection(t *testing.T) {
	h := newHarness(t, Config{})
	chrome := h.newPublisher(t)
	vp8Video, _ := chrome.publications(t)
	safari := h.newPublisherWith(t, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"})
	h264Video, _ := safari.publications(t)

	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, vp8Video)
	first := sub.awaitTracks(t, 1, chrome.video)[webrtc.RTPCodecTypeVideo]
	sub.subscribe(t, h264Video)
	second := sub.awaitTracks(t, 1, safari.video)[webrtc.RTPCodecTypeVideo]

	for _, tc := range []struct {
		r    *received
		src  *source
		mime string
	}{{first, chrome.video, webrtc.MimeTypeVP8}, {second, safari.video, webrtc.MimeTypeH264}} {
		if got := tc.r.track.Codec().MimeType; got != tc.mime {
			t.Errorf("track %s codec = %s; want %s", tc.r.track.ID(), got, tc.mime)
		}
		from := tc.src.send(t, 20)
		checkContinuous(t, tc.mime, tc.r.expect(t, from, 20, tc.src.size))
	}
}

// TestSubscriberWithoutTheCodec: a subscriber that cannot decode the
// publication's codec (H.264 to a VP8-only client) gets that track
// unbound and silent, the engine says why in its log, and the rest of its
// connection works: its audio flows.
func TestSubscriberWithoutTheCodec(t *testing.T) {
	var logs syncBuffer
	h := newHarnessLogging(t, Config{}, slog.New(slog.NewTextHandler(&logs, nil)))
	pub := h.newPublisherWith(t, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"})
	video, audio := pub.publications(t)

	vp8Only := &webrtc.MediaEngine{}
	for _, c := range []struct {
		codec webrtc.RTPCodecParameters
		kind  webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{PayloadType: 96, RTPCodecCapability: vp8}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{PayloadType: 111, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}}, webrtc.RTPCodecTypeAudio},
	} {
		if err := vp8Only.RegisterCodec(c.codec, c.kind); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(vp8Only), webrtc.WithSettingEngine(se))
	sub := h.newSubscriber(t, api)
	subs := sub.subscribe(t, video, audio)

	deadline := time.After(waitFor)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for !strings.Contains(logs.String(), "subscriber_codec_unsupported") {
		pub.video.send(t, 1)
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("log after subscribing a VP8-only client to H.264 = %q; want subscriber_codec_unsupported", logs.String())
		}
	}
	if subs[0].bound.Load() != nil {
		t.Error("subscription bound to a client without the codec; want unbound")
	}
	r := sub.awaitTracks(t, 1, pub.audio)[webrtc.RTPCodecTypeAudio]
	from := pub.audio.send(t, 20)
	checkContinuous(t, "audio", r.expect(t, from, 20, pub.audio.size))
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
