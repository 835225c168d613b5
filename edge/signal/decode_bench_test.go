package signal_test

import (
	"strings"
	"testing"

	"github.com/media-service/media-service/edge/signal"
)

// benchOffer is the shape of a browser's publisher offer with one audio
// and one video m-line: what a join decodes once and every renegotiation
// decodes again.
var benchOffer = strings.Join([]string{
	"v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
	"a=group:BUNDLE 0 1", "a=extmap-allow-mixed", "a=msid-semantic: WMS stream",
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
	"a=ice-ufrag:Gk2b", "a=ice-pwd:V1m1q4e0cTlZLq6D3mrmcU0E", "a=ice-options:trickle",
	"a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF",
	"a=setup:actpass", "a=mid:0", "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
	"a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
	"a=sendonly", "a=msid:stream audio-track", "a=rtcp-mux",
	"a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc", "a=fmtp:111 minptime=10;useinbandfec=1",
	"a=rtpmap:63 red/48000/2", "a=fmtp:63 111/111", "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000",
	"a=rtpmap:8 PCMA/8000", "a=rtpmap:13 CN/8000", "a=rtpmap:110 telephone-event/48000", "a=rtpmap:126 telephone-event/8000",
	"a=ssrc:1001 cname:Yk1xYzpWd2Fz", "a=ssrc:1001 msid:stream audio-track",
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
	"a=ice-ufrag:Gk2b", "a=ice-pwd:V1m1q4e0cTlZLq6D3mrmcU0E", "a=ice-options:trickle",
	"a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF",
	"a=setup:actpass", "a=mid:1", "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
	"a=sendonly", "a=msid:stream video-track", "a=rtcp-mux", "a=rtcp-rsize",
	"a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 ccm fir",
	"a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
	"a=rtpmap:102 H264/90000", "a=rtcp-fb:102 transport-cc", "a=rtcp-fb:102 nack", "a=rtcp-fb:102 nack pli",
	"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
	"a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102", "a=rtpmap:104 VP9/90000", "a=fmtp:104 profile-id=0",
	"a=rtpmap:105 rtx/90000", "a=fmtp:105 apt=104", "a=rtpmap:106 H264/90000",
	"a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	"a=rtpmap:107 rtx/90000", "a=fmtp:107 apt=106",
	"a=ssrc-group:FID 2001 2002", "a=ssrc:2001 cname:Yk1xYzpWd2Fz", "a=ssrc:2002 cname:Yk1xYzpWd2Fz", "",
}, "\r\n")

// BenchmarkDecode measures decoding a client's message as the edge does
// for every one it reads: candidates are the most frequent (a dozen or so
// per join), offers the largest.
func BenchmarkDecode(b *testing.B) {
	offer, err := signal.Encode(&signal.Message{Type: signal.TypeOffer, Target: signal.TargetPublisher, SDP: benchOffer})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		msg  string
	}{
		{"candidate", `{"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:3348 1 udp 2122260223 192.0.2.10 52044 typ host generation 0 ufrag Gk2b network-id 1","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"Gk2b"}}`},
		{"offer", string(offer)},
		{"leave", `{"type":"leave"}`},
		{"malformed", `{"type":"candidate","target":"publisher","candidate":"not an object"}`},
	}
	for _, c := range cases {
		data := []byte(c.msg)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				_, _ = signal.Decode(data)
			}
		})
	}
}
