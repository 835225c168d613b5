package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/internal/envconfig"
	"github.com/media-service/media-service/telemetry"
)

// TestGoroutineBudgetsCoverSessions measures the service's goroutines per
// session (both PeerConnections up, the data channels open) and per
// forwarded track, and checks that the leak detector's default budgets
// (MEDIA_LEAK_SESSION_BUDGET, MEDIA_LEAK_TRACK_BUDGET) explain them: a
// default below what a session really runs would make every busy
// instance look like a leak. The subscriber connection comes up with the
// first track, so the figures are fitted from two counts: every
// participant publishing audio, then audio and video. The ICE muxes are
// bound to loopback: Pion runs a few goroutines per connection for each
// address it gathers a candidate on, and the host's addresses are not
// the test's to fix (other tests add and remove links). The README rows
// quote the logged figures.
func TestGoroutineBudgetsCoverSessions(t *testing.T) {
	var defaults telemetry.Config
	if err := envconfig.Parse(&defaults, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	s := startService(t, "MEDIA_ICE_BIND_ADDR=127.0.0.1", "MEDIA_ICE_TCP_BIND_ADDR=127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	idle := settledGoroutines(t, s)

	const n = 4
	clients := make([]*client.Client, n)
	for i := range clients {
		clients[i] = joinRoom(ctx, t, s, "budget", fmt.Sprintf("p%d", i), webrtc.ICETransportPolicyAll)
		if err := clients[i].OpenData(ctx); err != nil {
			t.Fatalf("p%d: OpenData: %v", i, err)
		}
	}
	// Each kind published by all n is n publications and n(n-1)
	// subscriptions.
	const tracksPerKind = n + n*(n-1)
	var counts [2]int // with audio; with audio and video
	for k, kind := range []string{"audio", "video"} {
		for i, c := range clients {
			track, err := newTrack(kind, fmt.Sprintf("p%d-%s", i, kind))
			if err != nil {
				t.Fatal(err)
			}
			publishSending(ctx, t, c, track)
		}
		for i, c := range clients {
			awaitTracks(ctx, t, c, n-1, fmt.Sprintf("p%d %s", i, kind))
		}
		counts[k] = settledGoroutines(t, s)
	}

	perTrack := float64(counts[1]-counts[0]) / tracksPerKind
	perSession := (float64(counts[0]-idle) - tracksPerKind*perTrack) / n
	t.Logf("goroutines: %d idle; %d with %d sessions and %d tracks; %d with %d tracks: %.1f per session, %.1f per track",
		idle, counts[0], n, tracksPerKind, counts[1], 2*tracksPerKind, perSession, perTrack)
	if perSession > float64(defaults.LeakSessionBudget) {
		t.Errorf("a session runs %.1f goroutines; MEDIA_LEAK_SESSION_BUDGET's default %d does not cover it", perSession, defaults.LeakSessionBudget)
	}
	if perTrack > float64(defaults.LeakTrackBudget) {
		t.Errorf("a track runs %.1f goroutines; MEDIA_LEAK_TRACK_BUDGET's default %d does not cover it", perTrack, defaults.LeakTrackBudget)
	}
	explained := n*defaults.LeakSessionBudget + 2*tracksPerKind*defaults.LeakTrackBudget
	if got := counts[1] - idle; got > explained {
		t.Errorf("%d sessions with %d tracks run %d goroutines; the default budgets explain %d", n, 2*tracksPerKind, got, explained)
	}
}

// newTrack is an Opus ("audio") or VP8 ("video") track.
func newTrack(kind, id string) (*webrtc.TrackLocalStaticRTP, error) {
	if kind == "audio" {
		return client.NewAudioTrack(id)
	}
	return client.NewVideoTrack(id)
}

// awaitTracks waits for want more tracks forwarded to c.
func awaitTracks(ctx context.Context, t *testing.T, c *client.Client, want int, what string) {
	t.Helper()
	for got := 0; got < want; got++ {
		select {
		case <-c.Tracks():
		case <-ctx.Done():
			t.Fatalf("%s: received %d of %d tracks", what, got, want)
		}
	}
}

// goroutinesSeries is the Go collector's live goroutine count on /metrics.
var goroutinesSeries = regexp.MustCompile(`(?m)^go_goroutines(?:\{[^}]*\})? (\d+)$`)

// settledGoroutines is the service's goroutine count once it has settled:
// the lowest of several scrapes a little apart, since short-lived
// goroutines (a timer's callback, a scrape's own) come and go.
func settledGoroutines(t *testing.T, s *service) int {
	t.Helper()
	low := -1
	for range 10 {
		_, body := get(t, "http://"+s.OpsAddr+"/metrics")
		m := goroutinesSeries.FindStringSubmatch(body)
		if m == nil {
			t.Fatal("GET /metrics has no go_goroutines")
		}
		n, _ := strconv.Atoi(m[1])
		if low < 0 || n < low {
			low = n
		}
		time.Sleep(200 * time.Millisecond) // spread the samples out
	}
	return low
}
