package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

func isError(code string) func(*signal.Message) bool {
	return func(m *signal.Message) bool { return m.Type == signal.TypeError && m.Code == code }
}

// leaveNormally checks the session still works: leave is answered with a
// normal close.
func leaveNormally(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	var ce *websocket.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close after leave = %v; want 1000", c.Err())
	}
}

func TestCandidateLimit(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t, "demo", "alice")
	for i := range 51 {
		cand := fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host", i, 40000+i)
		if err := c.Send(&signal.Message{Type: signal.TypeCandidate, Target: signal.TargetPublisher,
			Candidate: &webrtc.ICECandidateInit{Candidate: cand}}); err != nil {
			t.Fatal(err)
		}
	}
	m := waitEvent(t, c, 5*time.Second, "candidate_limit error", isError(signal.CodeCandidateLimit))
	if !strings.Contains(m.Message, "50") {
		t.Errorf("candidate_limit message = %q; want it to name the limit", m.Message)
	}
	if got := ts.counter(t, "media_ice_candidates_refused", "reason", "limit"); got != 1 {
		t.Errorf("media_ice_candidates_refused{reason=limit} = %d; want 1", got)
	}
	// The session continues: it can still publish, and leave normally.
	publish(t, c)
	leaveNormally(t, c)
}

func TestBadMessagesGetErrors(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t, "demo", "alice")
	tests := []struct {
		name, msg, code string
	}{
		{"not json", "hello", signal.CodeBadMessage},
		{"array", "[1,2]", signal.CodeBadMessage},
		{"binary junk", "\x00\xff\x01", signal.CodeBadMessage},
		{"type not a string", `{"type":7}`, signal.CodeBadMessage},
		{"unknown type", `{"type":"subscribe_all"}`, signal.CodeUnknownType},
		{"offer without sdp", `{"type":"offer","target":"publisher"}`, signal.CodeInvalidSDP},
		{"offer with junk sdp", `{"type":"offer","target":"publisher","sdp":"junk"}`, signal.CodeInvalidSDP},
		{"answer with nothing outstanding", `{"type":"answer","target":"subscriber","sdp":"v=0"}`, signal.CodeInvalidSDP},
		{"candidate for nothing", `{"type":"candidate","target":"elsewhere","candidate":{"candidate":"x"}}`, signal.CodeBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.SendRaw([]byte(tt.msg)); err != nil {
				t.Fatal(err)
			}
			m := waitEvent(t, c, 5*time.Second, "error", isType(signal.TypeError))
			if m.Code != tt.code {
				t.Errorf("error for %s = %s (%s); want %s", tt.name, m.Code, m.Message, tt.code)
			}
		})
	}
	leaveNormally(t, c)
}

func TestOversizedMessageCloses1009(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t, "demo", "alice")
	// The server may close before the whole message is written: the send
	// can fail, what counts is the close code the client reads.
	_ = c.SendRaw([]byte(`{"type":"offer","target":"publisher","sdp":"` + strings.Repeat("a", 70<<10) + `"}`))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open 5s after an oversized message")
	}
	var ce *websocket.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("close after a 70 KiB message = %v; want 1009", c.Err())
	}
	waitSessionClosed(t, ts, reasonMessageTooBig, 0)
}

func TestPublishRefusals(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxTracks = 1 })
	tests := []struct {
		name   string
		grants auth.Grants
		code   string
	}{
		{"beyond the track limit", bothGrants, signal.CodeTrackLimit},
		{"without the publish grant", auth.Grants{Subscribe: true}, signal.CodeNotPermitted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.dialWith(t, ts.token(t, "demo", tt.name, tt.grants), client.Options{})
			audio, _ := client.NewAudioTrack("a")
			video, _ := client.NewVideoTrack("v")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := c.Publish(ctx, audio, video)
			var se *signal.Error
			if !errors.As(err, &se) || se.Code != tt.code {
				t.Fatalf("Publish(audio, video) = %v; want error %s", err, tt.code)
			}
			leaveNormally(t, c)
		})
	}
}

func TestOfferStormRateLimited(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.OfferBurst = 3; c.OfferInterval = time.Minute })
	c := ts.dial(t, "demo", "alice")
	offer := recvOnlyOffer(t, ts)
	for range 5 {
		if err := c.Send(&signal.Message{Type: signal.TypeOffer, Target: signal.TargetPublisher, SDP: offer}); err != nil {
			t.Fatal(err)
		}
	}
	waitEvent(t, c, 5*time.Second, "rate_limited error", isError(signal.CodeRateLimited))
	waitFor(t, 5*time.Second, "offers 4 and 5 refused", func() bool {
		return ts.counter(t, "media_signal_errors", "code", signal.CodeRateLimited) == 2
	})
	if got := ts.counter(t, "media_signal_errors", "code", signal.CodeRateLimited); got != 2 {
		t.Errorf("media_signal_errors{code=rate_limited} = %d; want 2 (offers 4 and 5)", got)
	}
	leaveNormally(t, c)
}

// recvOnlyOffer is a valid publisher offer that sends nothing.
func recvOnlyOffer(t *testing.T, ts *testServer) string {
	t.Helper()
	pc, err := ts.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// rawDial opens a bare WebSocket, for clients that misbehave below the
// protocol: never reading, never answering pings. rcvbuf, when positive,
// shrinks the socket's receive buffer so a client that does not read
// fills up quickly.
func rawDial(t *testing.T, ts *testServer, token string, rcvbuf int) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if rcvbuf > 0 {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}}
		d.NetDialContext = nd.DialContext
	}
	conn, _, err := d.Dial(ts.url+"?access_token="+token, nil)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSlowClientDisconnected: a participant that never reads fills its
// send queue and is disconnected, while the others keep receiving.
func TestSlowClientDisconnected(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IdleTimeout, c.NegotiationTimeout = time.Minute, time.Minute })
	alice, bob := ts.dial(t, "demo", "alice"), ts.dial(t, "demo", "bob")
	aliceRecv := receive(t, alice)
	publish(t, bob)
	waitFor(t, 10*time.Second, "alice receives bob", func() bool {
		st, _ := aliceRecv.stats(bob.ID(), "audio")
		return st.packets > 0
	})

	slow := rawDial(t, ts, ts.token(t, "demo", "slow", bothGrants), 4096)
	flooded := make(chan struct{})
	go func() { // junk until the server gives up on the client
		defer close(flooded)
		junk := []byte("junk")
		for slow.SetWriteDeadline(time.Now().Add(5*time.Second)) == nil && slow.WriteMessage(websocket.TextMessage, junk) == nil {
		}
	}()
	waitFor(t, 30*time.Second, "a client that never reads is disconnected", func() bool {
		return ts.counter(t, "media_slow_client_disconnects", "", "") == 1
	})
	<-flooded
	waitSessionClosed(t, ts, signal.ReasonSlowClient, 2)
	before, _ := aliceRecv.stats(bob.ID(), "audio")
	waitFor(t, 5*time.Second, "alice still receives bob", func() bool {
		st, _ := aliceRecv.stats(bob.ID(), "audio")
		return st.packets >= before.packets+20
	})
	if st, _ := aliceRecv.stats(bob.ID(), "audio"); st.gaps != 0 {
		t.Errorf("alice's stream from bob has %d gaps; want 0", st.gaps)
	}
}

// TestSlowClientCountedOnce: the reader (its queue stayed full) and the
// writer (its write timed out) can find the same client slow at the same
// moment; the client is counted once. CI saw the count reach 2 there.
func TestSlowClientCountedOnce(t *testing.T) {
	ts := startServer(t, nil)
	ts.dial(t, "demo", "alice")
	sessions := ts.srv.Sessions().All()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions; want 1", len(sessions))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			<-start
			sessions[0].slowClient()
		})
	}
	close(start)
	wg.Wait()
	waitSessionClosed(t, ts, signal.ReasonSlowClient, 0)
	if got := ts.counter(t, "media_slow_client_disconnects", "", ""); got != 1 {
		t.Errorf("media_slow_client_disconnects = %d; want 1", got)
	}
}

// TestKeepalive: a client that answers pings stays past the idle timeout;
// one that is silent (never reads, so never pongs) is closed after it.
func TestKeepalive(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.PingInterval = 200 * time.Millisecond; c.IdleTimeout = time.Second })
	alive := ts.dial(t, "demo", "alive")
	rawDial(t, ts, ts.token(t, "demo", "silent", bothGrants), 0)
	waitFor(t, 5*time.Second, "silent session closed", func() bool {
		return ts.counter(t, "media_sessions_closed", "reason", signal.ReasonTimeout) == 1
	})
	select {
	case <-alive.Done():
		t.Fatalf("a client answering pings was closed: %v", alive.Err())
	default:
	}
	if got := ts.srv.Sessions().Len(); got != 1 {
		t.Errorf("sessions = %d; want 1 (the live one)", got)
	}
}

// TestDuplicateIdentityReplacesSession: the same identity joining again
// (a client reconnecting) replaces its old session, even in a full room.
func TestDuplicateIdentityReplacesSession(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxRoomParticipants = 1 })
	first := ts.dial(t, "demo", "alice")
	second := ts.dial(t, "demo", "alice")
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the first session is still open after the same identity joined again")
	}
	if got := first.LeaveReason(); got != signal.ReasonDuplicateIdentity {
		t.Errorf("first session's leave reason = %q; want %q", got, signal.ReasonDuplicateIdentity)
	}
	if len(second.Joined().Participants) != 0 {
		t.Errorf("second joined lists %v; want nobody else", second.Joined().Participants)
	}
}

// TestICEFailureClosesSession: when a participant's media path ends (its
// PeerConnection is gone while its WebSocket stays), the session is closed
// with leave ice_failed once ICE gives up, and the others are told.
func TestICEFailureClosesSession(t *testing.T) {
	ts := startServer(t, nil)
	alice, bob := ts.dial(t, "demo", "alice"), ts.dial(t, "demo", "bob")
	publish(t, alice)
	waitFor(t, 10*time.Second, "alice's publisher connected", func() bool {
		return alice.Publisher().ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	if err := alice.Publisher().Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-alice.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session still open 10s after its media path died")
	}
	if got := alice.LeaveReason(); got != signal.ReasonICEFailed {
		t.Errorf("leave reason = %q; want %q", got, signal.ReasonICEFailed)
	}
	m := waitEvent(t, bob, 5*time.Second, "participant_left for alice", isType(signal.TypeParticipantLeft))
	if m.Participant.ID != alice.ID() {
		t.Errorf("participant_left for %s; want alice %s", m.Participant.ID, alice.ID())
	}
}

// pump reads conn's messages into a channel until the connection ends.
func pump(t *testing.T, conn *websocket.Conn) <-chan *signal.Message {
	t.Helper()
	ch := make(chan *signal.Message, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if m, err := signal.Parse(data); err == nil {
				ch <- m
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return ch
}

// nextOffer reads until the server's next subscriber offer.
func nextOffer(t *testing.T, msgs <-chan *signal.Message) *signal.Message {
	t.Helper()
	return nextRaw(t, msgs, 10*time.Second, "subscriber offer", isType(signal.TypeOffer))
}

func mediaSections(t *testing.T, offer string) int {
	t.Helper()
	d, err := (&webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}).Unmarshal()
	if err != nil {
		t.Fatal(err)
	}
	return len(d.MediaDescriptions)
}

// TestSubscriberOffersOneAtATime: the server never has two subscriber
// offers outstanding; changes made while one is pending are batched into
// the next, sent once the answer arrives.
func TestSubscriberOffersOneAtATime(t *testing.T) {
	ts := startServer(t, nil)
	conn := rawDial(t, ts, ts.token(t, "demo", "watcher", bothGrants), 0)
	msgs := pump(t, conn)
	alice := ts.dial(t, "demo", "alice")
	publish(t, alice)
	first := nextOffer(t, msgs)

	bob := ts.dial(t, "demo", "bob")
	publish(t, bob)
	waitFor(t, 10*time.Second, "bob's tracks published", func() bool {
		r := ts.srv.rooms.m["demo"]
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.pubs) == 4
	})
	// Bob's tracks are in the room; give a second offer time to show up.
	quiet := time.After(300 * time.Millisecond)
	for waiting := true; waiting; {
		select {
		case m := <-msgs:
			if m != nil && m.Type == signal.TypeOffer {
				t.Fatal("a second subscriber offer came while the first was unanswered")
			}
		case <-quiet:
			waiting = false
		}
	}

	pc, err := ts.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	answer := func(offer *signal.Message) {
		t.Helper()
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
			t.Fatal(err)
		}
		a, err := pc.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetLocalDescription(a); err != nil {
			t.Fatal(err)
		}
		if err := conn.WriteJSON(&signal.Message{Type: signal.TypeAnswer, Target: signal.TargetSubscriber, SDP: a.SDP}); err != nil {
			t.Fatal(err)
		}
	}
	answer(first)
	second := nextOffer(t, msgs)
	if got := mediaSections(t, second.SDP); got != 4 {
		t.Errorf("second offer has %d media sections; want 4 (alice's and bob's audio and video)", got)
	}
}

// TestMessagesPaced: a client's messages beyond its rate are read more
// slowly, not dropped: a flood of 40 at 20 per second (burst 10) is
// answered in full, over at least the time the rate allows.
func TestMessagesPaced(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MessageRate, c.MessageBurst = 20, 10 })
	c := ts.dial(t, "demo", "alice")
	start := time.Now()
	for range 40 {
		if err := c.SendRaw([]byte("junk")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		waitEvent(t, c, 5*time.Second, fmt.Sprintf("error %d", i+1), isError(signal.CodeBadMessage))
	}
	// 10 at once, then 30 more at 20 per second: 1.5s at least.
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Errorf("40 messages at 20/s with a burst of 10 were handled in %s; want at least 1.5s", took)
	}
	leaveNormally(t, c)
}
