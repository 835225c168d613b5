package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

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
		NegotiationTimeout: 5 * time.Second, RetryAfter: time.Second, HTTPHeaderTimeout: 5 * time.Second, HTTPIdleTimeout: 5 * time.Second}
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
