package client

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestAheadOf: a server candidate is held while it names an ICE generation
// (ufrag) other than the applied description's, as after a publisher
// restart whose answer the negotiating goroutine has not applied yet.
func TestAheadOf(t *testing.T) {
	d := &webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:oldgen\r\na=ice-pwd:0123456789abcdefghijkl\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n"}
	line := "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
	str := func(s string) *string { return &s }
	tests := []struct {
		name string
		cand webrtc.ICECandidateInit
		want bool
	}{
		{"line of the applied generation", webrtc.ICECandidateInit{Candidate: line + " ufrag oldgen"}, false},
		{"line of a newer generation", webrtc.ICECandidateInit{Candidate: line + " ufrag newgen"}, true},
		{"usernameFragment of a newer generation", webrtc.ICECandidateInit{Candidate: line, UsernameFragment: str("newgen")}, true},
		{"usernameFragment of the applied generation", webrtc.ICECandidateInit{Candidate: line + " ufrag newgen", UsernameFragment: str("oldgen")}, false},
		{"no ufrag", webrtc.ICECandidateInit{Candidate: line}, false},
		{"does not parse", webrtc.ICECandidateInit{Candidate: "candidate:nonsense"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aheadOf(d, tt.cand); got != tt.want {
				t.Errorf("aheadOf(%q) = %v; want %v", tt.cand.Candidate, got, tt.want)
			}
		})
	}
}
