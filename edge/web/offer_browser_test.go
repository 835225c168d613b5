package web_test

import (
	"testing"
	"time"
)

// TestBrowserRollsBackARefusedOffer: an instance that takes one track per
// participant refuses the page's first publisher offer (camera and
// microphone) with track_limit, naming the offer's offer_id; the page
// rolls its publisher connection back to stable, where it can offer
// again (as it must after an ICE restart refused at the session's
// candidate bound), and stays in the room.
func TestBrowserRollsBackARefusedOffer(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t, "MEDIA_MAX_TRACKS_PER_PARTICIPANT=1")
	p := b.open(t, "alice", joinURL(serviceURL(svc), "refused", "alice"))
	p.waitFor("the offer refused", mediaTimeout, func(s snapshot) bool {
		for _, e := range s.Errors {
			if e.Code == "track_limit" {
				return true
			}
		}
		return false
	})
	deadline := time.Now().Add(mediaTimeout)
	for {
		var state string
		p.value(`window.mediaClient._session.pcs.publisher.signalingState`, &state)
		if state == "stable" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publisher signalingState = %q after the refusal; want stable (rolled back)", state)
		}
		time.Sleep(50 * time.Millisecond) // poll the page
	}
	if s := p.snapshot(); s.State == "closed" {
		t.Errorf("page state %q after a refused offer; want it still in the room", s.State)
	}
}
