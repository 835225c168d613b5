package edge

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// The tests here reach each bound of SECURITY.md at its default value
// from below: the last thing inside the bound is taken, the first beyond
// it is not. bounds_test.go and faults_test.go test the refusals.

// withDefaultBounds sets the bounds a test reaches to their defaults, over
// testConfig's shorter timers.
func withDefaultBounds(t *testing.T, c *Config) {
	t.Helper()
	d := defaultConfig(t)
	c.ReadLimit, c.MaxCandidates, c.SendQueue, c.SendTimeout = d.ReadLimit, d.MaxCandidates, d.SendQueue, d.SendTimeout
}

// syncErrors sends a message that the server answers with an unknown_type
// error and returns the first error c receives after it was sent: the
// answer itself when every earlier message was taken without an error.
// Messages are handled in order, so the answer comes after any error an
// earlier one caused.
func syncErrors(t *testing.T, c *client.Client) *signal.Message {
	t.Helper()
	if err := c.SendRaw([]byte(`{"type":"sync"}`)); err != nil {
		t.Fatal(err)
	}
	return waitEvent(t, c, 10*time.Second, "an error answer", isType(signal.TypeError))
}

// TestMessageAtReadLimit: a message of exactly the read limit (64 KiB) is
// read and answered, and the session goes on; one byte more closes with
// 1009.
func TestMessageAtReadLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { withDefaultBounds(t, c) })
	limit := int(defaultConfig(t).ReadLimit)
	// A JSON message of exactly n bytes: the server parses it and answers
	// unknown_type.
	message := func(n int) []byte {
		head, tail := `{"type":"sync","pad":"`, `"}`
		return []byte(head + strings.Repeat("a", n-len(head)-len(tail)) + tail)
	}
	c := ts.dial(t, "demo", "alice")
	if err := c.SendRaw(message(limit)); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent(t, c, 10*time.Second, "the answer to a message at the limit", isType(signal.TypeError)); m.Code != signal.CodeUnknownType {
		t.Fatalf("answer to a %d-byte message = %s (%s); want %s", limit, m.Code, m.Message, signal.CodeUnknownType)
	}
	if m := syncErrors(t, c); m.Code != signal.CodeUnknownType {
		t.Fatalf("after a %d-byte message: error %s; want the session going on", limit, m.Code)
	}

	_ = c.SendRaw(message(limit + 1)) // the server may close before the whole message is written
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("connection still open 10s after a %d-byte message", limit+1)
	}
	var ce *websocket.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("close after a %d-byte message = %v; want 1009", limit+1, c.Err())
	}
	waitSessionClosed(t, ts, reasonMessageTooBig, 0)
}

// TestCandidateAtLimit: the 50th candidate of a session is taken (held
// for its connection, no error), the 51st refused with candidate_limit.
func TestCandidateAtLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { withDefaultBounds(t, c) })
	limit := defaultConfig(t).MaxCandidates
	c := ts.dial(t, "demo", "alice")
	s := sessionOf(t, ts, "alice")
	send := func(i int) {
		t.Helper()
		cand := fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host", i, 40000+i)
		if err := c.Send(&signal.Message{Type: signal.TypeCandidate, Target: signal.TargetPublisher,
			Candidate: &webrtc.ICECandidateInit{Candidate: cand}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range limit {
		send(i)
	}
	if m := syncErrors(t, c); m.Code != signal.CodeUnknownType {
		t.Fatalf("after %d candidates: error %s (%s); want none", limit, m.Code, m.Message)
	}
	s.mu.Lock()
	taken, held := s.candidatesAll, len(s.held[signal.TargetPublisher])
	s.mu.Unlock()
	if taken != limit || held != limit {
		t.Errorf("after %d candidates the session counts %d and holds %d; want %d and %d", limit, taken, held, limit, limit)
	}
	if got := ts.counter(t, "media_ice_candidates_refused", "reason", "limit"); got != 0 {
		t.Errorf("media_ice_candidates_refused{reason=limit} after %d = %d; want 0", limit, got)
	}

	send(limit)
	if m := syncErrors(t, c); m.Code != signal.CodeCandidateLimit {
		t.Errorf("candidate %d: error %s (%s); want %s", limit+1, m.Code, m.Message, signal.CodeCandidateLimit)
	}
	if got := ts.counter(t, "media_ice_candidates_refused", "reason", "limit"); got != 1 {
		t.Errorf("media_ice_candidates_refused{reason=limit} after %d = %d; want 1", limit+1, got)
	}
}

// sessionOf is the session of identity.
func sessionOf(t *testing.T, ts *testServer, identity string) *Session {
	t.Helper()
	var found *Session
	waitFor(t, 5*time.Second, identity+"'s session", func() bool {
		for _, s := range ts.srv.Sessions().All() {
			if s.Identity() == identity {
				found = s
			}
		}
		return found != nil
	})
	return found
}

// TestSlowClientGetsItsGrace: a client whose send queue (256) is full is
// not cut the moment a message finds no room, but only once the message
// has waited the 1 s send timeout. TestSlowClientCutWithinSendTimeout
// holds the other side: it is cut soon after.
func TestSlowClientGetsItsGrace(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		withDefaultBounds(t, c)
		c.WriteTimeout, c.PingInterval, c.IdleTimeout = 30*time.Second, time.Minute, 2*time.Minute
	})
	grace := defaultConfig(t).SendTimeout
	conn := rawDial(t, ts, ts.token(t, "demo", "slow", bothGrants), 4096)
	slow := sessionOf(t, ts, "slow")
	fillQueue(t, ts, conn, slow, cap(slow.ws.queue))
	if got, want := cap(slow.ws.queue), defaultConfig(t).SendQueue; got != want {
		t.Errorf("send queue holds %d; want the default %d", got, want)
	}
	// The message that finds no room is handled after this instant, so
	// the server cannot rightly cut the client before full + grace.
	full := time.Now()
	if _, err := conn.NetConn().Write(clientFrame([]byte(`{"type":"one-more"}`))); err != nil {
		t.Fatal(err)
	}
	for {
		cut := ts.counter(t, "media_slow_client_disconnects", "", "") == 1
		since := time.Since(full)
		if cut && since < grace {
			t.Fatalf("slow client cut %s after its queue was full; want not before the %s send timeout", since, grace)
		}
		if cut {
			break
		}
		if since > 10*time.Second {
			t.Fatalf("slow client not cut %s after its queue was full", since)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitSessionClosed(t, ts, signal.ReasonSlowClient, 0)
}
