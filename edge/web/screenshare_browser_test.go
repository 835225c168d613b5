package web_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/auth"
)

// TestBrowserMuteAndScreenShare: page A mutes its microphone and page B
// shows it muted; the server API mutes A's microphone and A's page
// disables it and shows it muted, as B does, and the API's unmute turns
// it back on; A shares its screen (Chromium's fake capture) and B
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

	mic := micOf(t, svc, "share", "alice")
	for _, muted := range []bool{true, false} {
		apiMute(t, svc, "share", "alice", mic, muted)
		alice.waitFor("alice's own microphone follows the API", mediaTimeout, func(s snapshot) bool { return s.Muted.Audio == muted })
		bob.waitFor("show alice's microphone as the API set it", mediaTimeout, func(s snapshot) bool {
			tl, ok := s.remote("alice")
			return ok && tl.AudioMuted == muted
		})
	}

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

// adminRequest sends one server API request with a dev-mode admin token
// and decodes a 2xx answer into out (when not nil).
func adminRequest(t *testing.T, svc *service, method, path string, body, out any) {
	t.Helper()
	tok, err := auth.DevKeyPair().MintAdmin(auth.AdminToken{Name: "test", Grants: auth.AdminGrants{RoomAdmin: true}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, serviceURL(svc)+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s = %d; want 2xx", method, path, resp.StatusCode)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// micOf returns the id of identity's microphone track, from the API.
func micOf(t *testing.T, svc *service, room, identity string) string {
	t.Helper()
	var p struct {
		Tracks []struct{ ID, Source string }
	}
	adminRequest(t, svc, http.MethodGet, "/api/v1/rooms/"+room+"/participants/"+identity, nil, &p)
	for _, tr := range p.Tracks {
		if tr.Source == "microphone" {
			return tr.ID
		}
	}
	t.Fatalf("%s publishes no microphone: %+v", identity, p.Tracks)
	return ""
}

// apiMute mutes or unmutes a participant's track through the server API.
func apiMute(t *testing.T, svc *service, room, identity, track string, muted bool) {
	t.Helper()
	adminRequest(t, svc, http.MethodPost, "/api/v1/rooms/"+room+"/participants/"+identity+"/tracks/"+track+"/mute", map[string]bool{"muted": muted}, nil)
}
