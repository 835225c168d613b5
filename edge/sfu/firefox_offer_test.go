package sfu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// Firefox writes its offers differently from Chrome, and the files in
// testdata keep that shape (Firefox 128 publishing a camera with the
// browser client's sendEncodings, trimmed of candidates):
//
//   - the origin is "mozilla...THIS_IS_SDPARTA-<version>", the session
//     says a=msid-semantic:WMS *, a media section's attributes come
//     grouped and sorted by name, not in Chrome's order;
//   - payload types 120 (VP8), 121 (VP9), 126 and 97 (H.264), each with
//     its rtx, then ulpfec 123 and red 122: none of Chrome's numbers;
//   - the rid header extension is declared a=extmap:8/sendonly, with a
//     direction, and there is no repaired-rid extension: Firefox sends
//     retransmissions on the rtx SSRCs it lists in a=ssrc-group:FID;
//   - the simulcast section lists one a=ssrc per encoding and rtx, tied
//     to no rid: the server must go by the rid extension, not by them.
//
// A Pion participant stands in for Firefox: its own offer is rewritten
// into the file's (firefoxOffer), so the server answers Firefox's SDP,
// and the participant then sends as that answer says.

// firefoxOffer returns a publisherOffer that replaces a Pion offer by the
// Firefox offer in testdata/name, carrying the Pion participant's ICE
// credentials, DTLS fingerprint, candidates and SSRCs, so the two can
// connect and the server can place its packets.
func firefoxOffer(name string) func(testing.TB, webrtc.SessionDescription) webrtc.SessionDescription {
	return func(t testing.TB, pion webrtc.SessionDescription) webrtc.SessionDescription {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		ff, own := splitSections(string(b)), splitSections(pion.SDP)
		if len(ff) != len(own) {
			t.Fatalf("%s has %d media sections, the Pion offer %d", name, len(ff)-1, len(own)-1)
		}
		var out []string
		for i, sec := range ff {
			sec = takeSSRCs(sec, own[i])
			for _, key := range []string{"a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"} {
				sec = replaceAttr(sec, key, firstAttr(pion.SDP, key))
			}
			if i == 1 {
				for _, l := range own[i] {
					if strings.HasPrefix(l, "a=candidate:") {
						sec = append(sec, l)
					}
				}
				sec = append(sec, "a=end-of-candidates")
			}
			out = append(out, sec...)
		}
		return webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: strings.Join(out, "\r\n") + "\r\n"}
	}
}

// splitSections splits an SDP into its session part and media sections,
// each a list of lines.
func splitSections(sdp string) [][]string {
	var secs [][]string
	cur := []string{}
	for _, l := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "m=") {
			secs = append(secs, cur)
			cur = []string{}
		}
		cur = append(cur, l)
	}
	return append(secs, cur)
}

func firstAttr(sdp, key string) string {
	for _, l := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(l, key) {
			return l
		}
	}
	return ""
}

// replaceAttr replaces the lines starting with key by line.
func replaceAttr(sec []string, key, line string) []string {
	for i, l := range sec {
		if strings.HasPrefix(l, key) && line != "" {
			sec[i] = line
		}
	}
	return sec
}

// takeSSRCs renumbers the SSRCs of sec (a=ssrc and a=ssrc-group lines)
// to those of own, in the order each lists them first: the participant
// sends with its own.
func takeSSRCs(sec, own []string) []string {
	theirs, ours := ssrcsOf(sec), ssrcsOf(own)
	to := map[string]string{}
	for i, s := range theirs {
		if i < len(ours) {
			to[s] = ours[i]
		}
	}
	out := make([]string, len(sec))
	for i, l := range sec {
		if strings.HasPrefix(l, "a=ssrc") {
			f := strings.Fields(l)
			for j, w := range f {
				head, num, ok := strings.Cut(w, ":")
				if ok && to[num] != "" {
					f[j] = head + ":" + to[num]
				} else if to[w] != "" {
					f[j] = to[w]
				}
			}
			l = strings.Join(f, " ")
		}
		out[i] = l
	}
	return out
}

func ssrcsOf(sec []string) []string {
	var ssrcs []string
	for _, l := range sec {
		if v, ok := strings.CutPrefix(l, "a=ssrc:"); ok {
			n, _, _ := strings.Cut(v, " ")
			if !slices.Contains(ssrcs, n) {
				ssrcs = append(ssrcs, n)
			}
		}
	}
	return ssrcs
}

// TestFirefoxSimulcastOffer: the server answers Firefox's simulcast offer
// receiving its three rids with the rid extension at Firefox's id, adds
// no repaired-rid Firefox did not offer, and forwards each layer a Pion
// participant sends as that Firefox would: low, high, then middle, each
// asked for by the subscription.
func TestFirefoxSimulcastOffer(t *testing.T) {
	h := newHarness(t, Config{PLIInterval: 10 * time.Millisecond})
	h.publisherOffer = firefoxOffer("firefox_simulcast_offer.sdp")
	pub := h.newSimulcastPublisher(t, vp8)
	answer := h.publisherAnswer
	for _, want := range []string{
		"a=simulcast:recv q;h;f", "a=rid:q recv", "a=rid:h recv", "a=rid:f recv",
		"a=extmap:8", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
		"a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
		"a=rtpmap:120 VP8/90000",
	} {
		if !strings.Contains(answer, want) {
			t.Errorf("answer to Firefox's simulcast offer lacks %q:\n%s", want, answer)
		}
	}
	if strings.Contains(answer, "repaired-rtp-stream-id") {
		t.Errorf("answer negotiates repaired-rid, which Firefox did not offer:\n%s", answer)
	}
	video := pub.publication(t)

	sub := h.newSubscriber(t, clientAPI(t, true))
	s := sub.subscribe(t, video)[0]
	r := pub.awaitTrack(t, sub)
	for _, layer := range []int{0, 2, 1} {
		s.SetMaxLayer(layer)
		pub.untilLayer(t, s, layer, func() {})
		awaitPayloadLayer(t, pub, r, layer)
	}
}

// awaitPayloadLayer sends frames until r receives a packet of layer.
func awaitPayloadLayer(t *testing.T, pub *simulcastPublisher, r *received, layer int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		pub.sendFrame(t)
		select {
		case pkt := <-r.pkts:
			if got, _ := checkSimulcastPayload(t, pkt.Payload); got == layer {
				return
			}
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatalf("no packet of layer %d at the subscriber within %s", layer, waitFor)
}

// TestFirefoxOffer: a Firefox offer without simulcast (camera and
// microphone, Firefox's payload types and extension ids, rtx declared by
// a=ssrc-group:FID) is answered without simulcast, and its video and
// audio reach a subscriber whole.
func TestFirefoxOffer(t *testing.T) {
	h := newHarness(t, Config{})
	h.publisherOffer = firefoxOffer("firefox_offer.sdp")
	pub := h.newPublisher(t)
	answer := h.publisherAnswer
	for _, want := range []string{"a=rtpmap:120 VP8/90000", "a=rtpmap:109 opus/48000/2", "a=mid:0", "a=mid:1"} {
		if !strings.Contains(answer, want) {
			t.Errorf("answer to Firefox's offer lacks %q:\n%s", want, answer)
		}
	}
	if strings.Contains(answer, "a=simulcast") || strings.Contains(answer, "a=rid:") {
		t.Errorf("answer to an offer without simulcast has simulcast lines:\n%s", answer)
	}
	video, audio := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, video, audio)
	got := sub.awaitTracks(t, 2, pub.video, pub.audio)
	first := pub.video.send(t, 30)
	got[webrtc.RTPCodecTypeVideo].expect(t, first, 30, pub.video.size)
	first = pub.audio.send(t, 30)
	got[webrtc.RTPCodecTypeAudio].expect(t, first, 30, pub.audio.size)
}

// negotiatePublisher runs a test publisher's offer and answer: plainly,
// or through h.publisherOffer when a test sets one.
func (h *harness) negotiatePublisher(t testing.TB, client, server *webrtc.PeerConnection) {
	t.Helper()
	if h.publisherOffer == nil {
		negotiate(t, client, server)
		return
	}
	h.publisherAnswer = negotiateRewritten(t, client, server, h.publisherOffer, func(s string) string { return s })
}
