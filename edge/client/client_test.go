package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/goleak"

	"github.com/media-service/media-service/edge"
	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startEdge runs a dev-mode instance on loopback and returns its
// signaling URL.
func startEdge(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	media, err := sfu.New(sfu.Config{BindAddr: "127.0.0.1", TCPPort: -1}, noop.NewMeterProvider().Meter("client_test"), log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := edge.Config{HTTPHost: "127.0.0.1", OpsHost: "127.0.0.1", DrainTimeout: time.Second, SessionShards: 1,
		MaxSessions: 10, MaxRooms: 2, MaxRoomParticipants: 5, MaxTracks: 2, MaxCandidates: 50,
		SendQueue: 16, SendTimeout: time.Second, WriteTimeout: time.Second, PingInterval: time.Second,
		IdleTimeout: 5 * time.Second, ReadLimit: 64 << 10, MessageRate: 50, MessageBurst: 100, OfferBurst: 5, OfferInterval: time.Second,
		NegotiationTimeout: 5 * time.Second, RetryAfter: time.Second, HTTPHeaderTimeout: 5 * time.Second, HTTPIdleTimeout: 5 * time.Second,
		DataMaxMessage: 15 << 10, DataMessageRate: 100, DataMessageBurst: 200, DataMaxBuffered: 1 << 20}
	srv, err := edge.New(cfg, edge.Options{Log: log, Media: media})
	if err != nil {
		media.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "ws://" + srv.HTTPAddr().String() + "/v1/rtc"
}

func token(t *testing.T, room, identity string) string {
	t.Helper()
	s, err := auth.DevKeyPair().Mint(auth.Token{Room: room, Identity: identity,
		Grants: auth.Grants{Publish: true, Subscribe: true}, TTL: time.Minute}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDialRefusalIsDialError(t *testing.T) {
	url := startEdge(t)
	_, err := client.Dial(context.Background(), url, "bogus", client.Options{})
	var de *client.DialError
	if !errors.As(err, &de) || de.Status != http.StatusUnauthorized || de.Code != "unauthorized" {
		t.Fatalf("Dial(bad token) = %v; want a *DialError 401 unauthorized", err)
	}
}

// TestPublishReceiveLeave: what one participant publishes reaches the
// other, labelled with the publisher's id; events report joins and
// leaves.
func TestPublishReceiveLeave(t *testing.T) {
	url := startEdge(t)
	api, err := client.NewAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bob, err := client.Dial(ctx, url, token(t, "r", "bob"), client.Options{API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	alice, err := client.Dial(ctx, url, token(t, "r", "alice"), client.Options{API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if got := alice.Joined().Participants; len(got) != 1 || got[0].Identity != "bob" {
		t.Errorf("alice's joined participants = %v; want bob", got)
	}
	if m := <-bob.Events(); m.Type != signal.TypeParticipantJoined || m.Participant.ID != alice.ID() {
		t.Errorf("bob's first event = %+v; want participant_joined for alice", m)
	}

	audio, err := client.NewAudioTrack("mic")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Publish(ctx, audio); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq}, Payload: []byte("opus?")})
			}
		}
	}()
	defer func() { close(stop); <-sent }()

	select {
	case rt := <-bob.Tracks():
		if rt.ParticipantID != alice.ID() {
			t.Errorf("track's ParticipantID = %q; want alice %q", rt.ParticipantID, alice.ID())
		}
		pkt, _, err := rt.Track.ReadRTP()
		if err != nil || string(pkt.Payload) != "opus?" {
			t.Errorf("first packet = %v, %v; want payload opus?", pkt, err)
		}
	case <-ctx.Done():
		t.Fatal("bob got no track")
	}

	if err := alice.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for m := range bob.Events() {
		if m.Type == signal.TypeParticipantLeft && m.Participant.ID == alice.ID() {
			return
		}
	}
	t.Error("bob's events ended without participant_left for alice")
}

// redirector is a signaling endpoint that answers every join with a
// `redirect` to to(its own URL): a fleet whose instances disagree.
func redirector(t *testing.T, to func(self string) string) string {
	t.Helper()
	var self string
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		b, _ := signal.Encode(&signal.Message{Type: signal.TypeRedirect, URL: to(self), Reason: signal.ReasonRoomElsewhere})
		_ = conn.WriteMessage(websocket.TextMessage, b)
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	}))
	t.Cleanup(srv.Close)
	self = "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/rtc"
	return self
}

// TestDialFollowsRedirects: a redirect is followed with the same token to
// the instance that serves the room; URL and Redirects report the path.
func TestDialFollowsRedirects(t *testing.T) {
	edgeURL := startEdge(t)
	first := redirector(t, func(string) string { return edgeURL })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, first, token(t, "r", "ann"), client.Options{})
	if err != nil {
		t.Fatalf("Dial(through a redirect) = %v; want joined", err)
	}
	defer c.Close()
	if c.URL() != edgeURL || c.Redirects() != 1 {
		t.Errorf("URL(), Redirects() = %q, %d; want %q, 1", c.URL(), c.Redirects(), edgeURL)
	}
}

// TestDialRedirectLoop: a server that keeps redirecting gets MaxRedirects
// hops, then Dial fails with ErrRedirectLoop instead of hanging.
func TestDialRedirectLoop(t *testing.T) {
	var hops atomic.Int32
	loop := redirector(t, func(self string) string { hops.Add(1); return self })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := client.Dial(ctx, loop, token(t, "r", "ann"), client.Options{})
	if !errors.Is(err, client.ErrRedirectLoop) {
		t.Fatalf("Dial(a redirect loop) = %v; want ErrRedirectLoop", err)
	}
	if got := hops.Load(); got != client.MaxRedirects+1 {
		t.Errorf("joins attempted = %d; want %d", got, client.MaxRedirects+1)
	}
	bad := redirector(t, func(string) string { return "https://elsewhere.example/v1/rtc" })
	if _, err := client.Dial(ctx, bad, token(t, "r", "ann"), client.Options{}); err == nil || !strings.Contains(err.Error(), "not a ws") {
		t.Errorf("Dial(a redirect to https://) = %v; want a refusal of the URL", err)
	}
}
