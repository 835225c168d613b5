package web_test

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/servicetest"
)

// The browser suite: real Chromium tabs with fake cameras and microphones
// join rooms on a real media-service process through the demo page.

// mediaTimeout bounds how long a page may take from joining to playing
// others' media on a loaded two-core machine (a Chromium tab starved of
// CPU takes seconds to answer an offer).
const mediaTimeout = 45 * time.Second

// joinURL is the demo page joining room as identity at once. Tabs send low
// quality video (less CPU on a shared machine) unless the test makes the
// README's screenshot.
func joinURL(base, room, identity string, extra ...string) string {
	q := url.Values{"room": {room}, "identity": {identity}, "autojoin": {"1"}, "quality": {"low"}}
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		q.Set("quality", "standard")
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		q.Set(k, v)
	}
	return base + "/?" + q.Encode()
}

// receiving reports whether s plays video from every identity (a decoded
// frame with a size) and receives its audio.
func receiving(s snapshot, identities ...string) bool {
	for _, id := range identities {
		t, ok := s.remote(id)
		if !ok || t.VideoWidth == 0 || t.FramesDecoded == 0 || t.AudioPacketsReceived == 0 {
			return false
		}
	}
	return true
}

// waitReceiving waits until p receives media from every identity, then
// until the decoded frame count of each has grown again: video that
// started and froze would not pass.
func waitReceiving(p *page, identities ...string) snapshot {
	p.t.Helper()
	first := p.waitFor("play media from "+strings.Join(identities, ", "), mediaTimeout, func(s snapshot) bool {
		return s.State == "connected" && receiving(s, identities...)
	})
	return p.waitFor("keep decoding frames from "+strings.Join(identities, ", "), 10*time.Second, func(s snapshot) bool {
		for _, id := range identities {
			before, _ := first.remote(id)
			now, ok := s.remote(id)
			if !ok || now.ID != before.ID || now.FramesDecoded <= before.FramesDecoded {
				return false
			}
		}
		return true
	})
}

// others is names without the one at i.
func others(names []string, i int) []string {
	return append(append([]string(nil), names[:i]...), names[i+1:]...)
}

// checkRoom checks that every page receives every other page's media, shows
// exactly one tile per participant and showed no error.
func checkRoom(t *testing.T, pages []*page, names []string) {
	t.Helper()
	for i, p := range pages {
		s := waitReceiving(p, others(names, i)...)
		if len(s.Tiles) != len(names) {
			t.Errorf("%s: %d tiles; want %d (one per participant): %s", p.name, len(s.Tiles), len(names), s)
		}
		if len(s.Errors) > 0 {
			t.Errorf("%s: page showed errors %v; want none", p.name, s.Errors)
		}
	}
}

func TestBrowserPagesSeeAndHearEachOther(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t)
	names := []string{"alice", "bob", "carol"}
	var pages []*page
	for _, n := range names[:2] {
		pages = append(pages, b.open(t, n, joinURL(serviceURL(svc), "demo", n)))
	}
	checkRoom(t, pages, names[:2])
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		writeDemoScreenshot(t, pages[0], "bob")
	}

	pages = append(pages, b.open(t, "carol", joinURL(serviceURL(svc), "demo", "carol")))
	checkRoom(t, pages, names)

	// The server's `error` reaches the user: a message type it does not know.
	pages[0].eval(`mediaClient.session.send({type: "no_such_type"})`)
	pages[0].waitFor("show the server's error", 10*time.Second, func(s snapshot) bool {
		return len(s.Errors) == 1 && s.Errors[0].Code == "unknown_type" && s.Errors[0].Message != ""
	})

	// Leaving with the button closes cleanly and the others drop the tile.
	pages[2].click("leave")
	s := pages[2].waitFor("leave", 10*time.Second, func(s snapshot) bool { return s.LastClose != nil })
	if c := s.LastClose; c.Code != 1000 || !c.WasClean || !c.ByClient || s.State != "closed" {
		t.Errorf("carol after Leave: state %s, close %+v; want closed after a clean 1000 close of ours", s.State, *c)
	}
	for _, p := range pages[:2] {
		p.waitFor("drop carol's tile", 10*time.Second, func(s snapshot) bool {
			_, ok := s.remote("carol")
			return !ok && len(s.Tiles) == 2
		})
	}
}

// A user who opens the page, types a name and clicks Join gets in, and the
// mute buttons mute and unmute the microphone and camera.
func TestBrowserJoinFormAndMuteButtons(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t)
	alice := b.open(t, "alice", serviceURL(svc)+"/?room=mute&quality=low")
	if s := alice.snapshot(); s.State != "idle" {
		t.Fatalf("before Join: state %s; want idle", s.State)
	}
	alice.typeInto("identity", "alice")
	alice.click("join")
	s := alice.waitFor("join", mediaTimeout, func(s snapshot) bool { return s.State == "connected" })
	if s.Room != "mute" || s.Self == nil || s.Self.Identity != "alice" {
		t.Fatalf("after Join: room %q, self %+v; want room mute as alice", s.Room, s.Self)
	}
	tests := []struct {
		button string
		want   muted
	}{
		{"mic", muted{Audio: true}},
		{"cam", muted{Audio: true, Video: true}},
		{"mic", muted{Video: true}},
		{"cam", muted{}},
	}
	for _, tt := range tests {
		alice.click(tt.button)
		if got := alice.snapshot().Muted; got != tt.want {
			t.Errorf("after clicking %s: muted = %+v; want %+v", tt.button, got, tt.want)
		}
	}
}

// An instance with an API secret hands out no dev tokens: the page says so
// and stops, and joins with a token minted by `media-service token`.
func TestBrowserTokenInURLWithoutDevMode(t *testing.T) {
	keys := []string{"MEDIA_API_KEY=browser-test", "MEDIA_API_SECRET=browser-test-secret-of-at-least-32-bytes"}
	b := newBrowser(t)
	svc := startService(t, keys...)
	nodev := b.open(t, "nodev", joinURL(serviceURL(svc), "prod", "alice"))
	s := nodev.waitFor("refuse to join", mediaTimeout, func(s snapshot) bool { return s.State == "closed" })
	if len(s.Errors) != 1 || s.Errors[0].Code != "dev_mode_off" {
		t.Errorf("without a token: errors %v; want one dev_mode_off", s.Errors)
	}
	token := mintToken(t, keys, "prod", "bob")
	p := b.open(t, "token", joinURL(serviceURL(svc), "prod", "bob", "token="+token))
	s = p.waitFor("join with the token", mediaTimeout, func(s snapshot) bool { return s.State == "connected" })
	if s.Self == nil || s.Self.Identity != "bob" {
		t.Errorf("joined as %+v; want bob, the token's identity", s.Self)
	}
}

// mintToken runs `media-service token` with the instance's keys.
func mintToken(t *testing.T, keys []string, room, identity string) string {
	t.Helper()
	cmd := exec.Command(serviceBinary(t), "token", "-room", room, "-identity", identity)
	cmd.Env = append(servicetest.CleanEnv(), keys...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("media-service token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestBrowserRelayOnlyThroughTURN(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t)
	alice := b.open(t, "alice", joinURL(serviceURL(svc), "relay", "alice", "relay=1"))
	bob := b.open(t, "bob", joinURL(serviceURL(svc), "relay", "bob"))
	waitReceiving(bob, "alice")
	waitReceiving(alice, "bob")
	// iceTransportPolicy "relay" allows nothing else, but check what the
	// browser reports: both of alice's connections go through a relay.
	alice.waitFor("use relayed candidates", 10*time.Second, func(s snapshot) bool {
		return s.Transport != nil &&
			s.Transport.Publisher.LocalCandidateType == "relay" &&
			s.Transport.Subscriber.LocalCandidateType == "relay"
	})
	if s := bob.snapshot(); s.Transport == nil || s.Transport.Publisher.LocalCandidateType == "relay" {
		t.Errorf("bob (no relay flag) transport = %+v; want a direct candidate", s.Transport)
	}
}

// writeDemoScreenshot stores the README's picture of the demo page once the
// page shows live stats for the other participant.
func writeDemoScreenshot(t *testing.T, p *page, other string) {
	t.Helper()
	p.waitFor("show live stats", 10*time.Second, func(s snapshot) bool {
		r, ok := s.remote(other)
		return ok && r.BitrateKbps > 0
	})
	path := filepath.Join("..", "..", "docs", "demo.png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, p.screenshot(), 0o644); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("wrote %s", path)
}

// Two tabs with one identity: the server ends the older session, and that
// tab must stop rather than reconnect and take the room back, forever.
func TestBrowserDuplicateIdentityStops(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t)
	first := b.open(t, "first", joinURL(serviceURL(svc), "dup", "alice"))
	first.waitFor("join", mediaTimeout, func(s snapshot) bool { return s.State == "connected" })
	second := b.open(t, "second", joinURL(serviceURL(svc), "dup", "alice"))
	second.waitFor("join", mediaTimeout, func(s snapshot) bool { return s.State == "connected" })
	s := first.waitFor("stop", 10*time.Second, func(s snapshot) bool { return s.State == "closed" })
	if len(s.Errors) != 1 || s.Errors[0].Code != "duplicate_identity" || s.Reconnects != 0 {
		t.Errorf("first tab errors %v, reconnects %d; want one duplicate_identity error and no reconnect", s.Errors, s.Reconnects)
	}
	if s := second.snapshot(); s.State != "connected" || s.Reconnects != 0 {
		t.Errorf("second tab state %s, reconnects %d; want connected, 0", s.State, s.Reconnects)
	}
}

func TestBrowserReloadRejoins(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t)
	alice := b.open(t, "alice", joinURL(serviceURL(svc), "reload", "alice"))
	bob := b.open(t, "bob", joinURL(serviceURL(svc), "reload", "bob"))
	waitReceiving(alice, "bob")
	before := waitReceiving(bob, "alice")

	bob.reload()
	after := bob.waitFor("rejoin as a new participant", mediaTimeout, func(s snapshot) bool {
		return s.Self != nil && s.Self.ID != before.Self.ID
	})
	waitReceiving(bob, "alice")
	s := alice.waitFor("replace bob's tile", mediaTimeout, func(s snapshot) bool {
		t, ok := s.remote("bob")
		return ok && t.ID == after.Self.ID && receiving(s, "bob") && len(s.Tiles) == 2
	})
	waitReceiving(alice, "bob")
	for _, tl := range s.Tiles {
		if tl.ID == before.Self.ID {
			t.Errorf("alice still shows bob's old session %s after the reload: %s", tl.ID, s)
		}
	}
}

func TestBrowserDrainThenReconnect(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t, "MEDIA_DRAIN_TIMEOUT=5s")
	names := []string{"alice", "bob"}
	pages := []*page{b.open(t, "alice", joinURL(serviceURL(svc), "drain", "alice")), b.open(t, "bob", joinURL(serviceURL(svc), "drain", "bob"))}
	checkRoom(t, pages, names)

	svc.Signal(t, syscall.SIGTERM)
	for _, p := range pages {
		p.waitFor("show the draining notice", 5*time.Second, func(s snapshot) bool {
			return s.DrainingSeen && s.Banner == "draining"
		})
	}
	// Each page leaves a little before the deadline (1000 after its
	// leave); on a starved machine the server's close at the deadline
	// (1001) may come first. Either way the close is clean.
	for _, p := range pages {
		s := p.waitFor("close the session", 15*time.Second, func(s snapshot) bool { return s.LastClose != nil })
		if c := s.LastClose; !c.WasClean || (c.Code != 1000 && c.Code != 1001) {
			t.Errorf("%s: WebSocket closed with %+v; want a clean 1000 or 1001 close", p.name, *c)
		}
	}
	if code := svc.WaitExit(t, 15*time.Second); code != 0 {
		t.Errorf("service exit code = %d; want 0", code)
	}
	checkDrainLogs(t, svc, len(pages))

	// The same address comes back (a restarted instance, or the platform's
	// next one): both pages return on their own and get media again.
	_, port, _ := net.SplitHostPort(svc.HTTPAddr)
	startService(t, "PORT="+port)
	for i, p := range pages {
		p.waitFor("reconnect", mediaTimeout, func(s snapshot) bool { return s.State == "connected" && s.Reconnects >= 1 })
		waitReceiving(p, others(names, i)...)
	}
}

// With another instance behind the same address, SIGTERM moves both pages
// to it long before the drain deadline: each joins the other instance and
// only then leaves the draining one (make before break).
func TestBrowserDrainMovesToAnotherInstance(t *testing.T) {
	b := newBrowser(t)
	old := startService(t, "MEDIA_DRAIN_TIMEOUT=60s")
	next := startService(t)
	door := newFrontDoor(t, serviceURL(old))
	names := []string{"alice", "bob"}
	pages := []*page{b.open(t, "alice", joinURL(door.URL(), "move", "alice")), b.open(t, "bob", joinURL(door.URL(), "move", "bob"))}
	checkRoom(t, pages, names)

	door.route(t, serviceURL(next))
	old.Signal(t, syscall.SIGTERM)
	start := time.Now()
	for i, p := range pages {
		p.waitFor("move to the other instance", mediaTimeout, func(s snapshot) bool {
			return s.DrainingSeen && s.State == "connected" && s.Reconnects == 1
		})
		t.Logf("%s joined the other instance %s after SIGTERM", p.name, time.Since(start).Round(time.Millisecond))
		waitReceiving(p, others(names, i)...)
		t.Logf("%s receives media again %s after SIGTERM", p.name, time.Since(start).Round(time.Millisecond))
	}
	if code := old.WaitExit(t, 30*time.Second); code != 0 {
		t.Errorf("draining instance exit code = %d; want 0", code)
	}
	t.Logf("draining instance exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	checkDrainLogs(t, old, len(pages))
	stopped, _ := old.Find("server_stopped")
	if got := stopped["closed_at_deadline"]; got != float64(0) {
		t.Errorf("server_stopped closed_at_deadline = %v; want 0 (every page moved before the deadline)", got)
	}
	if got := next.Count("session_joined"); got != len(pages) {
		t.Errorf("other instance logged %d session_joined; want %d", got, len(pages))
	}
}

// checkDrainLogs checks that server_stopped counts every session.
func checkDrainLogs(t *testing.T, svc *service, sessions int) {
	t.Helper()
	stopped, ok := svc.Find("server_stopped")
	if !ok {
		t.Fatalf("no server_stopped log line")
	}
	if got := stopped["closed_sessions"]; got != float64(sessions) {
		t.Errorf("server_stopped closed_sessions = %v; want %d", got, sessions)
	}
}
