package web_test

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/redistest"
)

// fleetNode is one instance of a fleet on one Redis, and the signaling
// URL its MEDIA_PUBLIC_URL gives clients.
type fleetNode struct {
	*service
	rtc string
}

// startFleetNode runs an instance in the fleet on redisURL; its port is
// chosen first, since its MEDIA_PUBLIC_URL must name it.
func startFleetNode(t *testing.T, redisURL string, env ...string) fleetNode {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	base := []string{"PORT=" + port, "MEDIA_REDIS_URL=" + redisURL, "MEDIA_PUBLIC_URL=http://127.0.0.1:" + port}
	return fleetNode{startService(t, append(base, env...)...), "ws://127.0.0.1:" + port + "/v1/rtc"}
}

// Two pages open the demo page of two different instances of a fleet and
// join one room: the directory sends one of them to the other's instance
// (a redirect the browser client follows), and they play each other's
// video. SIGTERM to that instance moves the room whole: both pages join
// the sibling the `draining` message names, make before break, and play
// each other's video again there.
func TestBrowserFleetRoomOnOneInstance(t *testing.T) {
	rd := redistest.Start(t)
	var nodes []fleetNode
	for range 3 {
		nodes = append(nodes, startFleetNode(t, rd.URL(), "MEDIA_DRAIN_TIMEOUT=60s"))
	}
	b := newBrowser(t)
	names := []string{"alice", "bob"}
	pages := []*page{
		b.open(t, "alice", joinURL(serviceURL(nodes[0].service), "fleet", "alice")),
		b.open(t, "bob", joinURL(serviceURL(nodes[1].service), "fleet", "bob")),
	}
	checkRoom(t, pages, names)
	at := sameInstance(t, pages)
	var holder fleetNode
	for _, n := range nodes {
		if n.rtc == at {
			holder = n
		}
	}
	if holder.service == nil {
		t.Fatalf("the room is at %s, no instance of the fleet", at)
	}

	holder.Signal(t, syscall.SIGTERM)
	start := time.Now()
	gaps := watchGaps(t, pages, names, at)
	for i, p := range pages {
		s := waitReceiving(p, others(names, i)...)
		if s.Handover == nil || !s.Handover.CaughtUp {
			t.Errorf("%s: handover %+v; want the new session swapped in once it received the others", p.name, s.Handover)
		}
		t.Logf("%s plays the other's media at the sibling; the longest time it showed no video of the other was %s; %+v",
			p.name, gaps[i].Round(100*time.Millisecond), *s.Handover)
	}
	t.Logf("both moved within %s of SIGTERM", time.Since(start).Round(time.Millisecond))
	if moved := sameInstance(t, pages); moved == at {
		t.Errorf("the room is still at the drained instance %s", at)
	}
	if code := holder.WaitExit(t, 30*time.Second); code != 0 {
		t.Errorf("drained instance exit code = %d; want 0", code)
	}
	stopped, _ := holder.Find("server_stopped")
	if got := stopped["closed_at_deadline"]; got != float64(0) {
		t.Errorf("server_stopped closed_at_deadline = %v; want 0 (both pages moved before the deadline)", got)
	}
}

// watchGaps polls the pages until each has moved away from the instance
// at and shows the others' video there, and returns for each the longest
// stretch it showed none, as its snapshots (every 100 ms or so) see it.
func watchGaps(t *testing.T, pages []*page, names []string, at string) []time.Duration {
	t.Helper()
	gaps := make([]time.Duration, len(pages))
	lastPlaying := make([]time.Time, len(pages))
	done := make([]bool, len(pages))
	for i := range pages {
		lastPlaying[i] = time.Now()
	}
	deadline := time.Now().Add(mediaTimeout)
	for slices.Contains(done, false) {
		if time.Now().After(deadline) {
			t.Fatalf("the pages did not move and play again within %s", mediaTimeout)
		}
		for i, p := range pages {
			s := p.snapshot()
			if done[i] || !showingVideo(s, others(names, i)...) {
				continue
			}
			now := time.Now()
			gaps[i] = max(gaps[i], now.Sub(lastPlaying[i]))
			lastPlaying[i] = now
			done[i] = s.DrainingSeen && s.Reconnects == 1 && s.URL != at
		}
		time.Sleep(100 * time.Millisecond)
	}
	return gaps
}

// showingVideo reports whether s has a video element with a decoded frame
// for every identity: what the user sees, read from the elements, not
// from the stats the page gathers once a second.
func showingVideo(s snapshot, identities ...string) bool {
	for _, id := range identities {
		if t, ok := s.remote(id); !ok || t.VideoWidth == 0 {
			return false
		}
	}
	return true
}

// sameInstance checks that every page's session is at one instance and
// returns its signaling URL.
func sameInstance(t *testing.T, pages []*page) string {
	t.Helper()
	var urls []string
	for _, p := range pages {
		urls = append(urls, fmt.Sprintf("%s at %s (%d redirects)", p.name, p.snapshot().URL, p.snapshot().Redirects))
	}
	first := pages[0].snapshot().URL
	for _, p := range pages[1:] {
		if u := p.snapshot().URL; u != first || u == "" {
			t.Fatalf("the room is split: %s", strings.Join(urls, ", "))
		}
	}
	t.Logf("%s", strings.Join(urls, ", "))
	return first
}
