package edge

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/media-service/media-service/edge/signal"
)

// TestFirefoxOffers: the server's signaling answers the Firefox offers of
// edge/sfu/testdata (whose media the sfu tests forward) as it answers
// Chrome's: with simulcast receive for the simulcast one, without for the
// plain one, and no error either way.
func TestFirefoxOffers(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		file string
		want []string
		not  []string
	}{
		{"firefox_simulcast_offer.sdp", []string{"a=simulcast:recv q;h;f", "a=rid:f recv", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"}, []string{"repaired-rtp-stream-id"}},
		{"firefox_offer.sdp", []string{"a=rtpmap:120 VP8/90000", "a=rtpmap:109 opus/48000/2"}, []string{"a=simulcast", "a=rid:"}},
	}
	for i, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile("sfu/testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			conn := rawDial(t, ts, ts.token(t, "ff", fmt.Sprintf("firefox%d", i), bothGrants), 0)
			readUntilType(t, conn, signal.TypeJoined)
			offer, err := signal.Encode(&signal.Message{Type: signal.TypeOffer, Target: signal.TargetPublisher, SDP: strings.ReplaceAll(string(b), "\n", "\r\n")})
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.WriteMessage(websocket.TextMessage, offer); err != nil {
				t.Fatal(err)
			}
			answer := readUntilType(t, conn, signal.TypeAnswer)
			for _, w := range tt.want {
				if !strings.Contains(answer.SDP, w) {
					t.Errorf("answer to %s lacks %q:\n%s", tt.file, w, answer.SDP)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(answer.SDP, n) {
					t.Errorf("answer to %s has %q:\n%s", tt.file, n, answer.SDP)
				}
			}
		})
	}
	if n := ts.counter(t, "media_signal_errors", "", ""); n != 0 {
		t.Errorf("media_signal_errors = %d after Firefox's offers; want 0", n)
	}
}
