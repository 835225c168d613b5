package edge

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// FuzzOfferSDP feeds a publisher offer's SDP, which a client controls
// entirely, through what the edge does with it before Pion applies it:
// parse, count sending tracks and inline candidates, and check the fields
// Pion needs. Nothing may panic, the counts must be consistent with the
// parsed description, and an offer that passes checkOffer must have every
// field checkOffer promises. Applying it to a PeerConnection is left out
// on purpose: Pion's background goroutines make coverage nondeterministic
// and slow the fuzzer's workers to a standstill; Pion fuzzes its own
// parsers, and TestBadOffersRefused applies bad offers to the real server.
func FuzzOfferSDP(f *testing.F) {
	// testdata/fuzz/FuzzOfferSDP holds a Pion client's sendonly offer and
	// its broken variants (inline candidates, no fingerprint, no mid,
	// truncated); these add hand-written edges.
	f.Add("v=0\r\n")
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=fingerprint:sha-256 00\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n")
	f.Fuzz(func(t *testing.T, offerSDP string) {
		offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}
		parsed, err := offer.Unmarshal()
		if err != nil {
			return
		}
		if n := sendingTracks(parsed); n < 0 || n > len(parsed.MediaDescriptions) {
			t.Fatalf("sendingTracks = %d of %d media sections", n, len(parsed.MediaDescriptions))
		}
		for _, c := range sdpCandidates(parsed) {
			if !strings.Contains(offerSDP, c) {
				t.Fatalf("sdpCandidates returned %q, which the offer does not carry", c)
			}
		}
		if checkOffer(parsed) != nil {
			return
		}
		if _, err := checkedSections(parsed); err != nil {
			t.Fatalf("an offer that passed checkOffer: %v", err)
		}
	})
}

// checkedSections re-derives, independently of checkOffer, that every
// media section has a mid and that ICE credentials and a fingerprint are
// present at session or media level; it returns the section count.
func checkedSections(d *sdp.SessionDescription) (int, error) {
	found := map[string]bool{}
	for _, a := range d.Attributes {
		found[a.Key] = true
	}
	for i, m := range d.MediaDescriptions {
		mid := false
		for _, a := range m.Attributes {
			found[a.Key] = true
			mid = mid || a.Key == "mid"
		}
		if !mid {
			return 0, fmt.Errorf("media section %d has no mid", i)
		}
	}
	for _, key := range []string{"ice-ufrag", "ice-pwd", "fingerprint"} {
		if !found[key] {
			return 0, fmt.Errorf("no %s", key)
		}
	}
	return len(d.MediaDescriptions), nil
}
