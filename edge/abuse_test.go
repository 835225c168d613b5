package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// The adversarial suite: a client that breaks the protocol on purpose.
// Each test drives a real instance over loopback sockets and checks that
// the abuse gets a clear answer, costs bounded resources and leaves the
// session (or the others) working. bounds_test.go and join_test.go cover
// the single-step refusals; these are the floods, the storms and the
// tricks.

// heapAfterGC is the live heap once garbage is collected: what the
// process really holds.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // a second cycle frees what the first left in sync.Pools' victim caches
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestCandidateFloodBounded: 10,000 candidates from one session. The
// first 50 are taken, every other one is answered with candidate_limit
// (no silent drop), and the process's live heap does not grow with the
// flood: refused candidates are not kept anywhere.
func TestCandidateFloodBounded(t *testing.T) {
	const flood, limit = 10000, 50
	ts := startServer(t, nil)
	var refused atomic.Int64
	c := ts.dialWith(t, ts.token(t, "demo", "flooder", bothGrants), client.Options{OnEvent: func(m *signal.Message) {
		if m.Type == signal.TypeError && m.Code == signal.CodeCandidateLimit {
			refused.Add(1)
		}
	}})
	before := heapAfterGC()
	for i := range flood {
		cand := fmt.Sprintf(`{"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host","sdpMid":"0"}}`, i, 10000+i%50000)
		if err := c.SendRaw([]byte(cand)); err != nil {
			t.Fatalf("send candidate %d: %v", i, err)
		}
	}
	waitFor(t, 60*time.Second, "every refused candidate answered", func() bool { return refused.Load() == flood-limit })
	grown := int64(heapAfterGC()) - int64(before)
	if grown > 2<<20 {
		t.Errorf("live heap grew by %d KiB over a %d-candidate flood; want under 2 MiB", grown>>10, flood)
	}
	if got := ts.counter(t, "media_ice_candidates_refused", "reason", "limit"); got != flood-limit {
		t.Errorf("media_ice_candidates_refused{reason=limit} = %d; want %d", got, flood-limit)
	}
	s := onlySession(t, ts)
	s.mu.Lock()
	held, counted := len(s.held[signal.TargetPublisher]), s.candidatesAll
	s.mu.Unlock()
	if held != limit || counted != limit {
		t.Errorf("session holds %d candidates, counted %d; want %d and %d", held, counted, limit, limit)
	}
	publish(t, c) // the session still negotiates after the flood
	leaveNormally(t, c)
}

// onlySession returns the instance's one session.
func onlySession(t *testing.T, ts *testServer) *Session {
	t.Helper()
	all := ts.srv.Sessions().All()
	if len(all) != 1 {
		t.Fatalf("sessions = %d; want 1", len(all))
	}
	return all[0]
}

// bigOffer is a well-formed publisher offer with n receive-only audio
// m-lines: it sends nothing, so the track limit does not apply, yet each
// m-line would become a transceiver on the server.
func bigOffer(t *testing.T, ts *testServer, n int) string {
	t.Helper()
	pc, err := ts.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for range n {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio,
			webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// TestBadOffersRefused: offers that do not parse, cannot be applied, or
// are as large as a message may be, are refused with invalid_sdp or
// track_limit; the session survives each and can still publish.
func TestBadOffersRefused(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.OfferBurst = 100 })
	c := ts.dial(t, "demo", "mallory")
	valid := recvOnlyOffer(t, ts)
	noFingerprint := dropLines(valid, "a=fingerprint:")
	noICE := dropLines(valid, "a=ice-ufrag:", "a=ice-pwd:")
	tests := []struct {
		name, sdp, code string
	}{
		{"truncated", valid[:len(valid)/3], signal.CodeInvalidSDP},
		{"no fingerprint", noFingerprint, signal.CodeInvalidSDP},
		{"no ICE credentials", noICE, signal.CodeInvalidSDP},
		{"binary", "v=0\r\n\x00\x01\x02\xff", signal.CodeInvalidSDP},
		{"only a version line", "v=0\r\n", signal.CodeInvalidSDP},
		{"many m-lines", bigOffer(t, ts, 80), signal.CodeTrackLimit},
		{"candidates inside the SDP", withCandidates(valid, 60), signal.CodeCandidateLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.Send(&signal.Message{Type: signal.TypeOffer, Target: signal.TargetPublisher, SDP: tt.sdp}); err != nil {
				t.Fatal(err)
			}
			m := waitEvent(t, c, 10*time.Second, "an answer to the bad offer", func(m *signal.Message) bool {
				return m.Type == signal.TypeError
			})
			if m.Code != tt.code {
				t.Errorf("offer %s refused with %s (%s); want %s", tt.name, m.Code, m.Message, tt.code)
			}
		})
	}
	publish(t, c)
	leaveNormally(t, c)
}

// withCandidates adds n host candidates to the first m-line of sdp: a
// way to hand the ICE agent candidates without a `candidate` message.
func withCandidates(sdp string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host\r\n", i, 20000+i)
	}
	at := strings.Index(sdp, "a=mid:")
	return sdp[:at] + b.String() + sdp[at:]
}

// TestSDPCandidatesCountTowardTheLimit: candidates carried inside offers
// and answers count toward the same per-session bound as trickled ones,
// so the bound cannot be sidestepped; within it they are accepted.
func TestSDPCandidatesCountTowardTheLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxCandidates = 10 })
	c := ts.dial(t, "demo", "mallory")
	offer := withCandidates(recvOnlyOffer(t, ts), 8)
	if err := c.Send(&signal.Message{Type: signal.TypeOffer, Target: signal.TargetPublisher, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "8 candidates counted", func() bool {
		s := onlySession(t, ts)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.candidatesAll == 8
	})
	for i := range 3 {
		cand := fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host", 100+i, 30000+i)
		if err := c.Send(&signal.Message{Type: signal.TypeCandidate, Target: signal.TargetPublisher,
			Candidate: &webrtc.ICECandidateInit{Candidate: cand, SDPMid: new(string)}}); err != nil {
			t.Fatal(err)
		}
	}
	waitEvent(t, c, 5*time.Second, "the 11th candidate refused", isError(signal.CodeCandidateLimit))
	if got := ts.counter(t, "media_ice_candidates_refused", "reason", "limit"); got != 1 {
		t.Errorf("media_ice_candidates_refused{reason=limit} = %d; want 1 (candidate 11)", got)
	}

	// A renegotiation repeats the candidates already sent: they are known,
	// so they do not count again and pass at the bound, while a new one
	// is still refused.
	known := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}
	parsed, err := known.Unmarshal()
	if err != nil {
		t.Fatal(err)
	}
	s := onlySession(t, ts)
	if !s.takeCandidates(signal.TargetPublisher, sdpCandidates(parsed)) {
		t.Error("takeCandidates(the 8 known candidates again) = false at the bound; want true")
	}
	if s.takeCandidates(signal.TargetPublisher, []string{"999 1 udp 2130706431 127.0.0.1 40000 typ host"}) {
		t.Error("takeCandidates(a new candidate) = true at the bound; want false")
	}
	if s.takeCandidates(signal.TargetSubscriber, sdpCandidates(parsed)) {
		t.Error("takeCandidates(the same lines for the other connection) = true at the bound; want false")
	}
	leaveNormally(t, c)
}

// dropLines removes the SDP lines that start with any of prefixes.
func dropLines(sdp string, prefixes ...string) string {
	var keep []string
	for _, l := range strings.Split(sdp, "\r\n") {
		drop := false
		for _, p := range prefixes {
			drop = drop || strings.HasPrefix(l, p)
		}
		if !drop {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\r\n")
}

// TestMessagesAfterLeaveIgnored: whatever follows a `leave` on the wire
// (an offer, candidates, junk) is not acted on: no answer, no error, the
// connection closes with 1000 and the room hears of the leave once.
func TestMessagesAfterLeaveIgnored(t *testing.T) {
	ts := startServer(t, nil)
	watcher := ts.dial(t, "demo", "watcher")
	conn := rawDial(t, ts, ts.token(t, "demo", "leaver", bothGrants), 0)
	readUntilType(t, conn, signal.TypeJoined)
	waitEvent(t, watcher, 5*time.Second, "participant_joined", isType(signal.TypeParticipantJoined))
	after := []string{
		`{"type":"leave"}`,
		`{"type":"offer","target":"publisher","sdp":"` + strings.ReplaceAll(recvOnlyOffer(t, ts), "\r\n", `\r\n`) + `"}`,
		`{"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}}`,
		`junk`, `{"type":"nonsense"}`, `{"type":"leave"}`,
	}
	// One write, so everything is in the server's read buffer before it
	// acts on the leave.
	var burst []byte
	for _, m := range after {
		burst = append(burst, clientFrame([]byte(m))...)
	}
	if _, err := conn.NetConn().Write(burst); err != nil {
		t.Fatal(err)
	}
	var got []string
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var err error
	for {
		var data []byte
		if _, data, err = conn.ReadMessage(); err != nil {
			break
		}
		got = append(got, string(data))
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close after leave = %v; want 1000", err)
	}
	if len(got) != 0 {
		t.Errorf("after leave the server sent %q; want nothing", got)
	}
	waitEvent(t, watcher, 5*time.Second, "participant_left", isType(signal.TypeParticipantLeft))
	waitSessionClosed(t, ts, reasonClientLeave, 1)
	if n := ts.counter(t, "media_signal_errors", "", ""); n != 0 {
		t.Errorf("media_signal_errors = %d after messages that followed leave; want 0", n)
	}
}

// clientFrame is data as one masked WebSocket text frame (RFC 6455 5.2),
// the way a client must send it; the all-zero mask leaves it readable.
func clientFrame(data []byte) []byte {
	f := []byte{0x81}
	switch n := len(data); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		panic("clientFrame: message too long for this test")
	}
	f = append(f, 0, 0, 0, 0) // mask key
	return append(f, data...)
}

// readUntilType reads a raw connection until a message of type typ.
func readUntilType(t *testing.T, conn *websocket.Conn, typ string) *signal.Message {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("reading for %s: %v", typ, err)
		}
		if m, err := signal.Parse(data); err == nil && m.Type == typ {
			return m
		}
	}
}

// TestSessionsPerAddressBounded: one address holds at most
// MaxSessionsPerIP sessions; the next join gets 429 too_many_sessions
// with Retry-After, a forwarding header does not get around it unless
// the operator named it as trusted, and a slot comes back when a session
// ends.
func TestSessionsPerAddressBounded(t *testing.T) {
	const perIP = 3
	tests := []struct {
		name     string
		header   string // MEDIA_CLIENT_IP_HEADER
		spoof    http.Header
		bypassed bool // the spoofed header counts as another address
	}{
		{"peer address", "", http.Header{"X-Forwarded-For": {"198.51.100.7"}, "Fly-Client-Ip": {"198.51.100.8"}}, false},
		{"trusted header", "Fly-Client-IP", http.Header{"Fly-Client-Ip": {"198.51.100.9"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.MaxSessionsPerIP, c.ClientIPHeader = perIP, tt.header })
			held := make([]*client.Client, perIP)
			for i := range held {
				held[i] = ts.dial(t, "demo", fmt.Sprintf("p%d", i))
			}
			de := dialRefusal(t, ts, ts.token(t, "demo", "one-more", bothGrants), "")
			if de.Status != http.StatusTooManyRequests || de.Code != "too_many_sessions" || de.RetryAfter <= 0 {
				t.Errorf("join beyond %d per address = %d %q retry %s; want 429 too_many_sessions with Retry-After", perIP, de.Status, de.Code, de.RetryAfter)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			spoofed, err := client.Dial(ctx, ts.url, ts.token(t, "demo", "spoofer", bothGrants), client.Options{API: ts.api, Header: tt.spoof})
			if err == nil {
				spoofed.Close()
			}
			if bypassed := err == nil; bypassed != tt.bypassed {
				t.Errorf("join with header %v: err = %v; want admitted=%v", tt.spoof, err, tt.bypassed)
			}
			leaveNormally(t, held[0])
			waitFor(t, 5*time.Second, "the slot comes back", func() bool {
				c, err := client.Dial(ctx, ts.url, ts.token(t, "demo", "after", bothGrants), client.Options{API: ts.api})
				if err == nil {
					c.Close()
				}
				return err == nil
			})
			if got := ts.counter(t, "media_joins", "result", joinAddrLimit); got < 1 {
				t.Errorf("media_joins{result=address_limit} = %d; want at least 1", got)
			}
		})
	}
}

// TestTokenTricks: tokens an attacker could try from the outside, each
// refused before the upgrade with 401 or 403 and a JSON code.
// join_test.go covers bad signatures, expiry, other rooms and missing
// grants.
func TestTokenTricks(t *testing.T) {
	ts := startServer(t, nil)
	now := time.Now()
	claims := func(edit func(*auth.Claims)) *auth.Claims {
		c := &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: testKeys.Key, Subject: "mallory",
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}, Room: "demo", Grants: bothGrants}
		edit(c)
		return c
	}
	devForged, err := auth.DevKeyPair().Mint(auth.Token{Room: "demo", Identity: "mallory", Grants: bothGrants, TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(func(*auth.Claims) {})).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, claims(func(*auth.Claims) {})).SignedString([]byte(testKeys.Secret))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token string
		status      int
		code        string
	}{
		{"signed with the public dev key", devForged, http.StatusUnauthorized, "unauthorized"},
		{"alg none", unsigned, http.StatusUnauthorized, "unauthorized"},
		{"HS512 with the right secret", hs512, http.StatusUnauthorized, "unauthorized"},
		{"no expiry", signClaims(t, "", testKeys.Secret, claims(func(c *auth.Claims) { c.ExpiresAt = nil })), http.StatusUnauthorized, "unauthorized"},
		{"not yet valid", signClaims(t, "", testKeys.Secret, claims(func(c *auth.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) })), http.StatusUnauthorized, "unauthorized"},
		{"oversized", signClaims(t, "", testKeys.Secret, claims(func(c *auth.Claims) { c.ID = strings.Repeat("j", auth.MaxTokenLen) })), http.StatusUnauthorized, "unauthorized"},
		{"identity too long", signClaims(t, "", testKeys.Secret, claims(func(c *auth.Claims) { c.Subject = strings.Repeat("m", auth.MaxIdentityLen+1) })), http.StatusUnauthorized, "unauthorized"},
		{"room with a slash", signClaims(t, "", testKeys.Secret, claims(func(c *auth.Claims) { c.Room = "demo/../admin" })), http.StatusForbidden, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			de := dialRefusal(t, ts, tt.token, "")
			if de.Status != tt.status || de.Code != tt.code {
				t.Errorf("Dial(%s) = %d %q (%s); want %d %q", tt.name, de.Status, de.Code, de.Message, tt.status, tt.code)
			}
		})
	}
	if n := ts.srv.Sessions().Len(); n != 0 {
		t.Errorf("sessions after forged tokens = %d; want 0", n)
	}
}

// TestTokenReplayedAfterExpiry: a token that admitted a participant is
// refused (401, "expired") once its expiry and the clock leeway have
// passed, although it was genuine and used before.
func TestTokenReplayedAfterExpiry(t *testing.T) {
	ts := startServer(t, nil)
	issued := time.Now()
	tok, err := testKeys.Mint(auth.Token{Room: "demo", Identity: "replayer", Grants: bothGrants, TTL: time.Second}, issued)
	if err != nil {
		t.Fatal(err)
	}
	leaveNormally(t, ts.dialWith(t, tok, client.Options{}))
	exp := issued.Truncate(time.Second).Add(time.Second) // NumericDate keeps whole seconds
	var de *client.DialError
	waitFor(t, 15*time.Second, "the replayed token refused", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, ts.url, tok, client.Options{API: ts.api})
		if err == nil {
			c.Close()
			return false
		}
		return errors.As(err, &de)
	})
	if refusedAt := time.Now(); refusedAt.Before(exp) {
		t.Errorf("token refused at %s, before its expiry %s", refusedAt, exp)
	}
	if de.Status != http.StatusUnauthorized || de.Code != "unauthorized" || !strings.Contains(de.Message, "expired") {
		t.Errorf("replay after expiry = %d %q %q; want 401 unauthorized naming the expiry", de.Status, de.Code, de.Message)
	}
}

// TestJoinStormJoinedFirst: many participants join one room at once.
// Each must get `joined` as its first message (Dial fails otherwise),
// although the others' participant_joined race to its queue, and each
// hears of every participant that joined after it.
//
// Thirty clients dialing at once in the test's own process can leave one
// silent for seconds on a loaded machine, so the idle timeout is the
// default's 30 s rather than testConfig's 3 s (the keepalive bound has
// tests of its own), and the dials get 30 s.
func TestJoinStormJoinedFirst(t *testing.T) {
	const n = 30
	ts := startServer(t, func(c *Config) { c.MaxRoomParticipants = n; c.IdleTimeout = 30 * time.Second })
	clients := make([]*client.Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range clients {
		tok := ts.token(t, "storm", fmt.Sprintf("p%d", i), bothGrants)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			clients[i], errs[i] = client.Dial(ctx, ts.url, tok, client.Options{API: ts.api})
		})
	}
	wg.Wait()
	for i, c := range clients {
		if errs[i] != nil {
			t.Fatalf("Dial %d in a join storm: %v", i, errs[i])
		}
		t.Cleanup(func() { c.Close() })
	}
	for i, c := range clients {
		for range n - 1 - len(c.Joined().Participants) {
			waitEvent(t, c, 10*time.Second, fmt.Sprintf("participant_joined at p%d", i), isType(signal.TypeParticipantJoined))
		}
	}
}

// TestUnansweredSubscriberOfferTimesOut: a participant that never answers
// its subscriber offer would block every later change to what it
// receives; after NegotiationTimeout it is told `leave timeout` and
// closed (1008), and the publisher is unaffected.
func TestUnansweredSubscriberOfferTimesOut(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.NegotiationTimeout = time.Second; c.IdleTimeout = time.Minute })
	bob := ts.dial(t, "demo", "bob")
	publish(t, bob)
	conn := rawDial(t, ts, ts.token(t, "demo", "mute", bothGrants), 0)
	readUntilType(t, conn, signal.TypeOffer)
	offered := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var leave *signal.Message
	var err error
	for {
		var data []byte
		if _, data, err = conn.ReadMessage(); err != nil {
			break
		}
		if m, perr := signal.Parse(data); perr == nil && m.Type == signal.TypeLeave {
			leave = m
		}
	}
	if leave == nil || leave.Reason != signal.ReasonTimeout {
		t.Errorf("last words = %+v; want leave timeout", leave)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Errorf("close = %v; want 1008", err)
	}
	if took := time.Since(offered); took > 3*time.Second {
		t.Errorf("closed %s after the unanswered offer; want about the 1s negotiation timeout", took)
	}
	waitLeft(t, bob, participantID(t, ts, "mute"), 5*time.Second)
	leaveNormally(t, bob)
}

// participantID is the participant id the instance gave identity, read
// from the session_joined log event (the session may already be gone).
func participantID(t *testing.T, ts *testServer, identity string) string {
	t.Helper()
	ts.logs.mu.Lock()
	defer ts.logs.mu.Unlock()
	for _, line := range strings.Split(ts.logs.buf.String(), "\n") {
		var ev struct{ Msg, Session, Identity string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Msg == "session_joined" && ev.Identity == identity {
			return ev.Session
		}
	}
	t.Fatalf("no session_joined for %s", identity)
	return ""
}

// TestAnswerWithoutCommonCodec: a subscriber answer that keeps none of
// the offered video codecs. Pion takes the description and then fails to
// start the video sender, which leaves the connection unable to offer
// again. The client is told invalid_sdp and its session is closed at
// once (reason negotiation_failed), instead of hanging on until the
// negotiation timeout or failing later as an internal error; the room
// goes on: a new participant gets the publisher's media.
func TestAnswerWithoutCommonCodec(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.NegotiationTimeout = 10 * time.Second; c.IdleTimeout = time.Minute })
	bob := ts.dial(t, "demo", "bob")
	publish(t, bob)
	conn := rawDial(t, ts, ts.token(t, "demo", "eve", bothGrants), 0)
	msgs := pump(t, conn)
	api, err := client.NewAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	answerTo := func(offer *signal.Message) string {
		t.Helper()
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
			t.Fatalf("client: apply the subscriber offer: %v", err)
		}
		answer, err := pc.CreateAnswer(nil)
		if err == nil {
			err = pc.SetLocalDescription(answer)
		}
		if err != nil {
			t.Fatalf("client: answer: %v", err)
		}
		return answer.SDP
	}
	sendAnswer := func(sdp string) {
		t.Helper()
		b, err := signal.Encode(&signal.Message{Type: signal.TypeAnswer, Target: signal.TargetSubscriber, SDP: sdp})
		if err == nil {
			err = conn.WriteMessage(websocket.TextMessage, b)
		}
		if err != nil {
			t.Fatalf("send answer: %v", err)
		}
	}

	// Answer in full until an offer carries bob's video, then without it.
	videoCodec := regexp.MustCompile(`(?m)^(a=rtpmap:\d+ )(VP8|VP9|H264|AV1)/`)
	var answer string
	for !videoCodec.MatchString(answer) {
		if answer != "" {
			sendAnswer(answer)
		}
		answer = answerTo(nextRaw(t, msgs, 5*time.Second, "a subscriber offer", isType(signal.TypeOffer)))
	}
	sendAnswer(videoCodec.ReplaceAllString(answer, "${1}X-NONE/"))
	refused := time.Now()
	if m := nextRaw(t, msgs, 5*time.Second, "an error", isType(signal.TypeError)); m.Code != signal.CodeInvalidSDP {
		t.Fatalf("answer without a common video codec: error %s (%s); want %s", m.Code, m.Message, signal.CodeInvalidSDP)
	}
	for range msgs { // until the server closes the connection
	}
	if took := time.Since(refused); took > 5*time.Second {
		t.Errorf("connection closed %s after the refused answer; want at once, not at the 10s negotiation timeout", took)
	}
	waitFor(t, 5*time.Second, "eve's session closed as negotiation_failed", func() bool {
		return ts.logCount(`"msg":"session_closed"`, `"identity":"eve"`, `"reason":"negotiation_failed"`) == 1
	})
	if n := ts.logCount(`"msg":"subscriber_offer_failed"`); n != 0 {
		t.Errorf("log has %d subscriber_offer_failed; want the session closed before another offer", n)
	}

	carol := ts.dial(t, "demo", "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := carol.AwaitMedia(ctx, participantID(t, ts, "bob")); err != nil {
		t.Errorf("a new participant after eve's refused answer: %v; want bob's media", err)
	}
	leaveNormally(t, carol)
	leaveNormally(t, bob)
}

// nextRaw returns the next message from msgs that matches, skipping the
// others.
func nextRaw(t *testing.T, msgs <-chan *signal.Message, within time.Duration, what string, match func(*signal.Message) bool) *signal.Message {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("connection ended waiting for %s", what)
			}
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s within %s", what, within)
		}
	}
}

// logCount counts the lines of the instance's log that contain every one
// of parts.
func (ts *testServer) logCount(parts ...string) int {
	ts.logs.mu.Lock()
	defer ts.logs.mu.Unlock()
	n := 0
	for line := range strings.Lines(ts.logs.buf.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}
