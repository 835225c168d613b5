package web_test

import (
	"testing"
)

// TestBrowserMuteAndScreenShare: page A mutes its microphone and page B
// shows it muted; A shares its screen (Chromium's fake capture) and B
// shows a second tile of A's, marked as a screen share, playing; A stops
// and B drops that tile.
func TestBrowserMuteAndScreenShare(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t)
	alice := b.open(t, "alice", joinURL(serviceURL(svc), "share", "alice"))
	bob := b.open(t, "bob", joinURL(serviceURL(svc), "share", "bob"))
	waitReceiving(bob, "alice")
	waitReceiving(alice, "bob")

	alice.click("mic")
	bob.waitFor("show alice muted", mediaTimeout, func(s snapshot) bool {
		tl, ok := s.remote("alice")
		return ok && tl.AudioMuted && !tl.Screen
	})
	alice.click("mic")
	bob.waitFor("show alice unmuted", mediaTimeout, func(s snapshot) bool {
		tl, ok := s.remote("alice")
		return ok && !tl.AudioMuted
	})

	alice.click("screen")
	alice.waitFor("share the screen", mediaTimeout, func(s snapshot) bool { return s.Sharing || len(s.Errors) > 0 })
	if s := alice.snapshot(); !s.Sharing {
		t.Fatalf("alice: screen share did not start: %v", s.Errors)
	}
	s := bob.waitFor("a screen-share tile of alice's, playing", mediaTimeout, func(s snapshot) bool {
		for _, tl := range s.Tiles {
			if tl.Screen && tl.Identity == "alice" && tl.VideoWidth > 0 {
				return true
			}
		}
		return false
	})
	if len(s.Tiles) != 3 {
		t.Errorf("bob: %d tiles; want 3 (his, alice's camera, alice's screen): %s", len(s.Tiles), s)
	}
	if cam, ok := s.remote("alice"); !ok || cam.Screen {
		t.Errorf("bob: alice's first tile %+v; want her camera, not marked", cam)
	}

	alice.click("screen")
	bob.waitFor("drop the screen-share tile", mediaTimeout, func(s snapshot) bool {
		for _, tl := range s.Tiles {
			if tl.Screen {
				return false
			}
		}
		return len(s.Tiles) == 2
	})
}
