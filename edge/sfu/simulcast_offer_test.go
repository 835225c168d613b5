package sfu

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// chromeSimulcastOffer is the video section of an offer as Chrome writes
// it for a track published with three sendEncodings (rids q, h, f),
// trimmed of audio and of candidates: RID simulcast with the mid, rid and
// repaired-rid header extensions, VP8 and H.264 with RTX.
const chromeSimulcastOffer = `v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS stream
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:EsAw
a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y
a=ice-options:trickle
a=fingerprint:sha-256 DA:7B:57:DC:28:CE:04:4F:31:79:85:C4:31:67:EB:27:58:29:ED:77:2A:0D:24:AE:ED:AD:30:BC:BD:F1:9C:02
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:toffset
a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:stream camera
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=rtcp-fb:102 goog-remb
a=rtcp-fb:102 transport-cc
a=rtcp-fb:102 ccm fir
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rid:q send
a=rid:h send
a=rid:f send
a=simulcast:send q;h;f
`

// TestSimulcastOfferAnswer: a publisher connection answers Chrome's
// simulcast offer receiving all three RIDs, with the header extensions
// that name a packet's layer; a subscriber connection offers none of them
// (forwarded packets carry no extension but transport-cc).
func TestSimulcastOfferAnswer(t *testing.T) {
	h := newHarness(t, Config{})
	pc := newServerPC(t, h.engine.NewPublisherPeerConnection)
	offer := strings.ReplaceAll(chromeSimulcastOffer, "\n", "\r\n")
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatalf("SetRemoteDescription(Chrome simulcast offer) = %v", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatalf("CreateAnswer() = %v", err)
	}
	for _, want := range []string{
		"a=simulcast:recv q;h;f",
		"a=rid:q recv", "a=rid:h recv", "a=rid:f recv",
		"urn:ietf:params:rtp-hdrext:sdes:mid",
		"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
		"urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
		"VP8/90000",
	} {
		if !strings.Contains(answer.SDP, want) {
			t.Errorf("answer to a simulcast offer lacks %q:\n%s", want, answer.SDP)
		}
	}

	conn := subscriberConn(t, h.engine)
	if _, err := conn.PeerConnection().AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	sub, err := conn.Offer()
	if err != nil {
		t.Fatalf("subscriber Offer() = %v", err)
	}
	if strings.Contains(sub.SDP, "sdes:") {
		t.Errorf("subscriber offer negotiates an SDES header extension:\n%s", sub.SDP)
	}
}
