package main

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// loadSessions is how many live sessions the shutdown tests hold: rooms of
// five, every fourth room with a publisher, so there are PeerConnections
// with ICE, DTLS and media to close as well as idle ones.
const loadSessions = 100

// maxSessionsFor lifts MEDIA_MAX_SESSIONS (derived from the measured
// capacity: 84 at GOMAXPROCS=2) above n sessions: these tests are about
// shutting down what is open, not about the bound.
func maxSessionsFor(n int) string { return fmt.Sprintf("MEDIA_MAX_SESSIONS=%d", 2*n) }

// metricSum sums every series of the named metric on the service's ops
// /metrics.
func metricSum(t *testing.T, s *service, name string) float64 {
	t.Helper()
	code, body := get(t, "http://"+s.OpsAddr+"/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// joinLoad joins loadSessions participants, ten at a time; in every
// fourth room the first one publishes audio. leaveOnDrain says which
// participants leave by themselves when told the instance drains.
func joinLoad(t *testing.T, s *service, leaveOnDrain func(i int) bool) []*client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api, err := client.NewAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]*client.Client, loadSessions)
	errs := make([]error, loadSessions)
	tokens := make([]string, loadSessions)
	for i := range tokens {
		tokens[i] = devToken(t, s, fmt.Sprintf("load%d", i/5), fmt.Sprintf("p%d", i))
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i := range clients {
		opts := client.Options{API: api}
		if leaveOnDrain(i) {
			opts.OnEvent = leaveWhenDraining(&clients[i])
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			clients[i], errs[i] = client.Dial(ctx, "ws://"+s.HTTPAddr+"/v1/rtc", tokens[i], opts)
		})
	}
	wg.Wait()
	for i, c := range clients {
		if errs[i] != nil {
			t.Fatalf("join %d: %v", i, errs[i])
		}
		t.Cleanup(func() { c.Close() })
	}
	for i := 0; i < len(clients); i += 20 {
		publishAudio(ctx, t, clients[i])
	}
	return clients
}

// leaveWhenDraining is an OnEvent handler that sends leave on `draining`,
// as a well-behaved client does. The client is read through *c because
// Dial has not returned it yet when the handler is made.
func leaveWhenDraining(c **client.Client) func(*signal.Message) {
	var once sync.Once
	return func(m *signal.Message) {
		if m.Type == signal.TypeDraining {
			once.Do(func() { go (*c).Send(&signal.Message{Type: signal.TypeLeave}) })
		}
	}
}

// waitConnected waits until every publisher's connection is up, so the
// shutdown meets live media.
func waitConnected(t *testing.T, clients []*client.Client) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < len(clients); i += 20 {
		for clients[i].Publisher().ConnectionState() != webrtc.PeerConnectionStateConnected {
			if time.Now().After(deadline) {
				t.Fatalf("publisher %d: %s after 60s", i, clients[i].Publisher().ConnectionState())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestShutdownUnderLoad: SIGTERM with 100 live sessions. Half leave when
// told the instance drains, the others stay; at the deadline the rest are
// closed. Every session is accounted for: closed_sessions in the log
// equals the sessions gauge before the signal, and the process exits 0
// within the drain timeout (plus the closing), before the watchdog.
func TestShutdownUnderLoad(t *testing.T) {
	const drain = 4 * time.Second
	s := startService(t, "MEDIA_DRAIN_TIMEOUT="+drain.String(), "MEDIA_MAX_SESSIONS_PER_IP=0", "MEDIA_ICE_BIND_ADDR=127.0.0.1", maxSessionsFor(loadSessions))
	clients := joinLoad(t, s, func(i int) bool { return i%2 == 1 })
	waitConnected(t, clients)
	gauge := metricSum(t, s, "media_sessions_active")
	if gauge != loadSessions {
		t.Fatalf("media_sessions_active = %v; want %d", gauge, loadSessions)
	}

	sent := time.Now()
	s.Signal(t, syscall.SIGTERM)
	stopped := s.WaitFor(t, "server_stopped", drain+10*time.Second)
	if got := stopped["closed_sessions"]; got != gauge {
		t.Errorf("server_stopped closed_sessions = %v; want %v (media_sessions_active before SIGTERM)", got, gauge)
	}
	if got := stopped["closed_at_deadline"]; got != float64(loadSessions/2) {
		t.Errorf("server_stopped closed_at_deadline = %v; want %d (the ones that stayed)", got, loadSessions/2)
	}
	if code := s.WaitExit(t, 10*time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
	if took := time.Since(sent); took > drain+watchdogMargin {
		t.Errorf("exit %s after SIGTERM; want within the %s drain timeout and before the %s watchdog", took, drain, drain+watchdogMargin)
	}
	checkAllClosed(t, clients, func(i int) string {
		if i%2 == 1 {
			return ""
		}
		return signal.ReasonServerShutdown
	})
}

// checkAllClosed checks every client's connection has ended, and that
// those the server closed were told why.
func checkAllClosed(t *testing.T, clients []*client.Client, wantReason func(i int) string) {
	t.Helper()
	for i, c := range clients {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("client %d still connected after the exit", i)
		}
		if want := wantReason(i); c.LeaveReason() != want {
			t.Errorf("client %d leave reason = %q; want %q", i, c.LeaveReason(), want)
		}
	}
}

// TestSecondSignalUnderLoad: with 100 sessions and a 60 s drain, a
// second SIGTERM skips the wait: every session is closed with
// server_shutdown and the process exits 0 at once.
func TestSecondSignalUnderLoad(t *testing.T) {
	s := startService(t, "MEDIA_DRAIN_TIMEOUT=60s", "MEDIA_MAX_SESSIONS_PER_IP=0", "MEDIA_ICE_BIND_ADDR=127.0.0.1", maxSessionsFor(loadSessions))
	clients := joinLoad(t, s, func(int) bool { return false })
	waitConnected(t, clients)
	s.Signal(t, syscall.SIGTERM)
	s.WaitFor(t, "shutting_down_server", 5*time.Second)
	second := time.Now()
	s.Signal(t, syscall.SIGTERM)
	stopped := s.WaitFor(t, "server_stopped", 15*time.Second)
	if got := stopped["closed_sessions"]; got != float64(loadSessions) {
		t.Errorf("server_stopped closed_sessions = %v; want %d", got, loadSessions)
	}
	if code := s.WaitExit(t, 10*time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
	if took := time.Since(second); took > watchdogMargin {
		t.Errorf("exit %s after the second SIGTERM; want well under the %s watchdog margin", took, watchdogMargin)
	}
	checkAllClosed(t, clients, func(int) string { return signal.ReasonServerShutdown })
}
