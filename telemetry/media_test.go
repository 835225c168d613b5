package telemetry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	pionturn "github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// join joins room as identity with a token from the dev endpoint, over
// loopback-only ICE (relay-only when policy says so).
func join(ctx context.Context, t *testing.T, p *process, room, identity string, policy webrtc.ICETransportPolicy) *client.Client {
	t.Helper()
	return joinWith(ctx, t, p, room, identity, policy, nil)
}

// joinWith is join with the client's WebSocket dialer (nil: the client's
// default).
func joinWith(ctx context.Context, t *testing.T, p *process, room, identity string, policy webrtc.ICETransportPolicy, dialer *websocket.Dialer) *client.Client {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/v1/dev/token?room=%s&identity=%s", p.HTTPAddr, room, identity))
	if err != nil {
		t.Fatalf("GET /v1/dev/token: %v", err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tok) != nil {
		t.Fatalf("GET /v1/dev/token = %s; want 200 with a token", resp.Status)
	}
	api, err := client.NewAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatalf("client.NewAPI: %v", err)
	}
	c, err := client.Dial(ctx, "ws://"+p.HTTPAddr+"/v1/rtc", tok.Token, client.Options{API: api, ICETransportPolicy: policy, Dialer: dialer})
	if err != nil {
		t.Fatalf("join %s as %s: %v", room, identity, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// publish publishes an Opus and a VP8 track and writes a packet to each
// every 20 ms until the returned stop is called (or the test ends).
func publish(ctx context.Context, t *testing.T, c *client.Client) (stop func()) {
	t.Helper()
	audio, err := client.NewAudioTrack("audio")
	if err != nil {
		t.Fatal(err)
	}
	video, err := client.NewVideoTrack("video")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, audio, video); err != nil {
		t.Fatalf("publish: %v", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		a := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 0xa0d10}, Payload: make([]byte, 120)}
		v := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 0x51de0, Marker: true}, Payload: []byte{0x10, 0, 0x9d, 0x01, 0x2a, 0, 0, 0, 0}}
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			a.SequenceNumber++
			a.Timestamp += 960
			v.SequenceNumber++
			v.Timestamp += 1800
			_ = audio.WriteRTP(a)
			_ = video.WriteRTP(v)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// sendBadCandidate sends a candidate that does not parse on c's publisher
// connection: the instance must refuse and count it.
func sendBadCandidate(t *testing.T, c *client.Client) {
	t.Helper()
	m := &signal.Message{Type: signal.TypeCandidate, Target: signal.TargetPublisher,
		Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:not a candidate"}}
	if err := c.Send(m); err != nil {
		t.Fatalf("send candidate: %v", err)
	}
}

// turnBadAuth asks the instance's TURN relay (the first turn: URL handed
// to c) for an allocation with a malformed username, which it must refuse
// and count.
func turnBadAuth(t *testing.T, c *client.Client) {
	t.Helper()
	var addr string
	for _, s := range c.Joined().ICEServers {
		for _, u := range s.URLs {
			if rest, ok := strings.CutPrefix(u, "turn:"); ok && !strings.Contains(rest, "transport=tcp") {
				addr, _, _ = strings.Cut(rest, "?")
			}
		}
	}
	if addr == "" {
		t.Fatalf("joined has no UDP TURN server: %+v", c.Joined().ICEServers)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: addr, Conn: conn,
		Username: "not-a-rest-username", Password: "wrong", RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("turn client: %v", err)
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		t.Fatalf("turn client listen: %v", err)
	}
	if relay, err := tc.Allocate(); err == nil {
		relay.Close()
		t.Fatal("TURN allocation with a malformed username succeeded; want it refused")
	}
}
