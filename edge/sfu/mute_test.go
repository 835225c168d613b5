package sfu

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// TestMuteStopsForwarding: packets sent while a track is muted reach no
// subscriber, and after unmute the stream goes on with the next sequence
// number, as if the muted stretch had never been sent.
func TestMuteStopsForwarding(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	_, audio := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, audio)
	r := sub.awaitTracks(t, 1, pub.audio)[webrtc.RTPCodecTypeAudio]

	before := r.expect(t, pub.audio.send(t, 20), 20, pub.audio.size)
	if !audio.SetMuted(true) || !audio.Muted() {
		t.Fatalf("SetMuted(true) did not mute; Muted() = %v", audio.Muted())
	}
	if audio.SetMuted(true) {
		t.Errorf("SetMuted(true) on a muted track = true; want false (no change)")
	}
	received := h.counter(t, "media_rtp_received_packets", "audio")
	mutedFirst := pub.audio.send(t, 50)
	// Unmute only once the server has read every muted packet: sent is
	// not yet received.
	deadline := time.Now().Add(waitFor)
	for h.counter(t, "media_rtp_received_packets", "audio") < received+50 {
		if time.Now().After(deadline) {
			t.Fatalf("the server read %d of the 50 muted packets within %s",
				h.counter(t, "media_rtp_received_packets", "audio")-received, waitFor)
		}
		time.Sleep(10 * time.Millisecond)
	}
	audio.SetMuted(false)
	afterFirst := pub.audio.send(t, 20)

	// Everything received up to the unmuted packets: none of the muted.
	seen := map[uint32]uint16{}
	timeout := time.After(waitFor)
	for len(seen) < 20 {
		select {
		case pkt := <-r.pkts:
			i := binary.BigEndian.Uint32(pkt.Payload)
			if i >= mutedFirst && i < afterFirst {
				t.Fatalf("packet %d, sent while muted, was forwarded", i)
			}
			if i >= afterFirst {
				seen[i] = pkt.SequenceNumber
			}
		case <-timeout:
			t.Fatalf("after unmute %d of 20 packets arrived", len(seen))
		}
	}
	if got, want := seen[afterFirst], before[len(before)-1]+1; got != want {
		t.Errorf("first sequence number after unmute = %d; want %d (continuing)", got, want)
	}
}

// TestMuteHoldsKeyframeRequests: while a video track is muted its
// subscribers' PLIs do not reach the publisher; unmuting asks for a
// keyframe at once, with no subscriber asking.
func TestMuteHoldsKeyframeRequests(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	plis := pub.readPLIs(t)
	video, _ := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, video)
	r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
	awaitPLI(t, plis, "subscriber's start")

	video.SetMuted(true)
	for len(plis) > 0 {
		<-plis
	}
	ssrc := uint32(r.track.SSRC())
	for range 5 {
		if err := sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
			t.Fatalf("WriteRTCP(PLI) = %v", err)
		}
	}
	select { // the window covers the throttle's 500ms hold of an earlier request
	case <-plis:
		t.Fatal("a PLI reached the publisher of a muted track")
	case <-time.After(1200 * time.Millisecond):
	}
	video.SetMuted(false)
	awaitPLI(t, plis, "unmute")
}

// TestParseSource: an empty source is the kind's default; a source of
// the other kind, or an unknown one, is refused.
func TestParseSource(t *testing.T) {
	video, audio := webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio
	for _, tc := range []struct {
		in   string
		kind webrtc.RTPCodecType
		want Source
		ok   bool
	}{
		{"", video, SourceCamera, true},
		{"", audio, SourceMicrophone, true},
		{"screen_share", video, SourceScreenShare, true},
		{"screen_share_audio", audio, SourceScreenShareAudio, true},
		{"microphone", video, "", false},
		{"camera", audio, "", false},
		{"webcam", video, "", false},
	} {
		got, ok := ParseSource(tc.in, tc.kind)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseSource(%q, %s) = %q, %v; want %q, %v", tc.in, tc.kind, got, ok, tc.want, tc.ok)
		}
	}
}
