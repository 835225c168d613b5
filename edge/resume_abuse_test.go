package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/redistest"
)

// rawSession is a participant spoken for by hand: its connection, its id
// and the resume credential it holds.
type rawSession struct {
	conn       *websocket.Conn
	id, resume string
}

// readFirst reads a new connection's first message.
func readFirst(t *testing.T, conn *websocket.Conn) *signal.Message {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("read the first message: %v", err)
	}
	m, err := signal.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// rawJoin joins room as identity by hand.
func rawJoin(t *testing.T, ts *testServer, room, identity string) *rawSession {
	t.Helper()
	conn := rawDial(t, ts, ts.token(t, room, identity, bothGrants), 0)
	m := readFirst(t, conn)
	if m.Type != signal.TypeJoined || m.Resume == "" || m.ResumeGraceMS == 0 {
		t.Fatalf("first message %s with resume %q, grace %d ms; want joined with both", m.Type, m.Resume, m.ResumeGraceMS)
	}
	return &rawSession{conn: conn, id: m.Participant.ID, resume: m.Resume}
}

// resumeAttempt is one resume's outcome: the status, and the error code
// of a refusal or the connection and `resumed` of a success.
type resumeAttempt struct {
	status  int
	code    string
	url     string
	conn    *websocket.Conn
	resumed *signal.Message
}

// tryResume resumes participant id at rtcURL with token and credential.
func tryResume(t *testing.T, rtcURL, token, id, credential string) resumeAttempt {
	t.Helper()
	q := url.Values{"access_token": {token}, "participant": {id}, "resume": {credential}}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(rtcURL+"?"+q.Encode(), nil)
	if err != nil {
		if resp == nil {
			t.Fatalf("resume: %v", err)
		}
		defer resp.Body.Close()
		var body apiError
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resumeAttempt{status: resp.StatusCode, code: body.Code, url: body.URL}
	}
	t.Cleanup(func() { conn.Close() })
	m := readFirst(t, conn)
	return resumeAttempt{status: http.StatusSwitchingProtocols, conn: conn, resumed: m}
}

// lose drops s's connection as a lost network does, and waits until its
// session waits for a resume.
func (s *rawSession) lose(t *testing.T, ts *testServer) {
	t.Helper()
	s.conn.NetConn().Close()
	sess, ok := ts.srv.Sessions().Get(s.id)
	if !ok {
		t.Fatalf("no session %s", s.id)
	}
	waitFor(t, 5*time.Second, "session detached", sess.resume.isDetached)
}

// alive checks that s's connection is still served: a bad message gets
// its error answer.
func (s *rawSession) alive(t *testing.T) {
	t.Helper()
	if err := s.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"sync"}`)); err != nil {
		t.Fatalf("write to the live connection: %v", err)
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer s.conn.SetReadDeadline(time.Time{})
	for {
		_, data, err := s.conn.ReadMessage()
		if err != nil {
			t.Fatalf("the live connection ended: %v", err)
		}
		if m, _ := signal.Parse(data); m != nil && m.Type == signal.TypeError {
			return
		}
	}
}

func (a resumeAttempt) check(t *testing.T, what string, status int, code string) {
	t.Helper()
	if a.status != status || a.code != code {
		t.Errorf("%s: %d %q; want %d %q", what, a.status, a.code, status, code)
	}
}

// TestResumeAbuse: a credential replayed, presented with another
// identity's token, raced by two reconnects at once, or used after the
// grace period is refused with a clear error, and disturbs nothing: the
// session and its live connection go on, and the room sees no leave
// until the grace period really ends.
func TestResumeAbuse(t *testing.T) {
	ts := startServer(t, withGrace(2*time.Second))
	_, bobLog := ts.watched(t, "r", "bob", client.Options{API: ts.api})
	alice := rawJoin(t, ts, "r", "alice")
	aliceTok, bobTok := ts.token(t, "r", "alice", bothGrants), ts.token(t, "r", "bob", bothGrants)
	alice.lose(t, ts)

	tryResume(t, ts.url, bobTok, alice.id, alice.resume).check(t, "resume with another identity's token", http.StatusForbidden, "resume_forbidden")
	ok := tryResume(t, ts.url, aliceTok, alice.id, alice.resume)
	ok.check(t, "resume", http.StatusSwitchingProtocols, "")
	if ok.resumed == nil || ok.resumed.Type != signal.TypeResumed || ok.resumed.Participant.ID != alice.id ||
		ok.resumed.Resume == "" || ok.resumed.Resume == alice.resume || len(ok.resumed.Participants) != 1 {
		t.Fatalf("resume answered %+v; want resumed as %s with a new credential and bob", ok.resumed, alice.id)
	}
	replayed := alice.resume
	alice.conn, alice.resume = ok.conn, ok.resumed.Resume
	tryResume(t, ts.url, aliceTok, alice.id, replayed).check(t, "replayed credential", http.StatusForbidden, "resume_forbidden")
	alice.alive(t)

	// Two reconnects with the same credential at once: one wins.
	alice.lose(t, ts)
	var wg sync.WaitGroup
	results := make([]resumeAttempt, 2)
	for i := range results {
		wg.Go(func() { results[i] = tryResume(t, ts.url, aliceTok, alice.id, alice.resume) })
	}
	wg.Wait()
	won := 0
	for _, r := range results {
		switch {
		case r.status == http.StatusSwitchingProtocols:
			won++
			alice.conn, alice.resume = r.conn, r.resumed.Resume
		case r.code != "resume_in_progress" && r.code != "resume_forbidden":
			t.Errorf("losing concurrent resume: %d %q; want 409 resume_in_progress or 403 resume_forbidden", r.status, r.code)
		}
	}
	if won != 1 {
		t.Fatalf("%d of 2 concurrent resumes won; want 1", won)
	}
	alice.alive(t)
	if n := bobLog.count(signal.TypeParticipantLeft, alice.id); n != 0 {
		t.Errorf("bob saw alice leave %d times while she resumed; want 0", n)
	}

	// After the grace period the session is gone, and so is resuming it.
	alice.lose(t, ts)
	waitSessionClosed(t, ts, reasonGraceExpired, 1)
	tryResume(t, ts.url, aliceTok, alice.id, alice.resume).check(t, "resume after the grace", http.StatusNotFound, "resume_unknown")
	if n := bobLog.count(signal.TypeParticipantLeft, alice.id); n != 1 {
		t.Errorf("bob saw alice leave %d times after the grace; want 1", n)
	}
	for _, result := range []string{resumeOK, resumeForbidden, resumeUnknown} {
		if ts.counter(t, "media_resumes", "result", result) == 0 {
			t.Errorf("media_resumes_total{result=%s} = 0; want some", result)
		}
	}
}

// TestResumeRateLimited: resume attempts with the participant's own token
// are limited per session; a burst of wrong credentials is refused with
// 429 past the burst, while other tokens' attempts do not spend it.
func TestResumeRateLimited(t *testing.T) {
	ts := startServer(t, withGrace(5*time.Second))
	alice := rawJoin(t, ts, "r", "alice")
	aliceTok, malloryTok := ts.token(t, "r", "alice", bothGrants), ts.token(t, "r", "mallory", bothGrants)
	for range 2 * resumeAttemptBurst {
		tryResume(t, ts.url, malloryTok, alice.id, "wrong").check(t, "another identity", http.StatusForbidden, "resume_forbidden")
	}
	for i := range resumeAttemptBurst {
		tryResume(t, ts.url, aliceTok, alice.id, "wrong").check(t, fmt.Sprintf("wrong credential %d", i+1), http.StatusForbidden, "resume_forbidden")
	}
	tryResume(t, ts.url, aliceTok, alice.id, alice.resume).check(t, "past the burst", http.StatusTooManyRequests, "rate_limited")
	alice.alive(t)
}

// TestResumeRefusedWhileDraining: a draining instance refuses a resume
// with 503 draining (and, in a fleet, the URL its room went to).
func TestResumeRefusedWhileDraining(t *testing.T) {
	ts := startServer(t, withGrace(5*time.Second))
	alice := rawJoin(t, ts, "r", "alice")
	alice.lose(t, ts)
	ts.cancel(&ShutdownCause{Reason: "test"})
	waitFor(t, 5*time.Second, "draining", ts.srv.Draining)
	tryResume(t, ts.url, ts.token(t, "r", "alice", bothGrants), alice.id, alice.resume).
		check(t, "resume while draining", http.StatusServiceUnavailable, "draining")
}

// TestResumeOnAnotherInstance: two instances of a fleet share a real
// Redis; a credential presented at the instance that does not hold the
// session is refused there, and still resumes at its own.
func TestResumeOnAnotherInstance(t *testing.T) {
	rd := redistest.Start(t)
	store, err := fleet.NewRedisStore(t.Context(), rd.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	a := startFleetServer(t, store, "media-a", withGrace(5*time.Second))
	b := startFleetServer(t, store, "media-b", withGrace(5*time.Second))
	waitRegistered(t, store, 2)
	alice := rawJoin(t, a, "r", "alice")
	alice.lose(t, a)
	tok := a.token(t, "r", "alice", bothGrants)
	tryResume(t, b.url, tok, alice.id, alice.resume).check(t, "resume at the other instance", http.StatusNotFound, "resume_unknown")
	tryResume(t, a.url, tok, alice.id, alice.resume).check(t, "resume at its own instance", http.StatusSwitchingProtocols, "")
}

// TestCandidateCapPerICEGeneration: the candidate cap counts per ICE
// generation: a full generation refuses the next candidate, a restart
// lets a full generation's worth in again, and the candidates of all
// generations stop at the session-wide bound however often the client
// restarts.
func TestCandidateCapPerICEGeneration(t *testing.T) {
	const limit = 5
	ts := startServer(t, func(c *Config) { c.MaxCandidates, c.OfferBurst = limit, 4*maxCandidateGenerations })
	alice := ts.dialWith(t, ts.token(t, "r", "alice", bothGrants), client.Options{API: ts.api, NoResume: true})
	publish(t, alice)
	s := sessionOf(t, ts, "alice")
	next := 0
	taken := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.candidatesAll
	}
	// fill trickles made-up publisher candidates until one is not taken,
	// and returns how many were. The answer to a sync after each tells
	// when the server has handled it (errors for the client's own
	// candidates may come between, so the count says what was taken).
	fill := func() int {
		t.Helper()
		for n := 0; ; n++ {
			next++
			before := taken()
			cand := fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host", next, 20000+next)
			if err := alice.Send(&signal.Message{Type: signal.TypeCandidate, Target: signal.TargetPublisher,
				Candidate: &webrtc.ICECandidateInit{Candidate: cand}}); err != nil {
				t.Fatal(err)
			}
			if err := alice.SendRaw([]byte(`{"type":"sync"}`)); err != nil {
				t.Fatal(err)
			}
			waitEvent(t, alice, 10*time.Second, "the answer to sync", func(m *signal.Message) bool { return m.Code == signal.CodeUnknownType })
			if taken() == before {
				return n
			}
			if n >= limit {
				t.Fatalf("%d candidates taken in one generation; want at most %d", n+1, limit)
			}
		}
	}
	if n := fill(); n == 0 || n > limit {
		t.Fatalf("first generation took %d made-up candidates; want 1 to %d", n, limit)
	}
	for gen := 2; ; gen++ {
		n, all := 0, taken()
		// At the bound the restart offer itself may be refused, when it
		// carries the new candidates inline: the restart fails with the
		// server's candidate_limit, not a timeout.
		var refused *signal.Error
		if err := alice.RestartICE(signal.TargetPublisher); err == nil {
			n, all = fill(), taken()
		} else if all < limit*(maxCandidateGenerations-1) {
			t.Fatalf("restart %d at %d candidates in all: %v", gen, all, err)
		} else if !errors.As(err, &refused) || refused.Code != signal.CodeCandidateLimit {
			t.Fatalf("restart %d refused at the session's bound: %v; want the server's %s", gen, err, signal.CodeCandidateLimit)
		} else {
			t.Logf("restart %d refused at %d candidates: %v", gen, all, err)
		}
		if all > limit*maxCandidateGenerations {
			t.Fatalf("after %d generations the session took %d candidates; want at most %d", gen, all, limit*maxCandidateGenerations)
		}
		if n == 0 {
			if all < limit*(maxCandidateGenerations-1) {
				t.Errorf("generation %d took nothing at %d candidates in all; want the bound %d reached first", gen, all, limit*maxCandidateGenerations)
			}
			break
		}
		if gen > 2*maxCandidateGenerations {
			t.Fatalf("still taking candidates after %d generations", gen)
		}
	}
	if n := ts.counter(t, "media_ice_restarts", "target", signal.TargetPublisher); n < maxCandidateGenerations-1 {
		t.Errorf("media_ice_restarts_total{target=publisher} = %d; want at least %d", n, maxCandidateGenerations-1)
	}
}
