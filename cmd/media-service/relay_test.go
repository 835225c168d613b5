package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
)

// TestRelayOnlyParticipant runs the service and joins a participant
// forced to relay-only ICE, whose media can only take the instance's own
// TURN relay to the SFU, and a second participant. Each receives the
// other's audio, and the relay's metrics show the bytes it carried.
//
// In "behind NAT" the SFU advertises a public address that is not on the
// host (127.0.0.2, where nothing listens), as on Fly: only relayed media
// can reach the SFU then (the relay delivers to its local socket), so both
// participants are relay-only.
func TestRelayOnlyParticipant(t *testing.T) {
	tests := []struct {
		name   string
		env    []string
		second webrtc.ICETransportPolicy
	}{
		{"direct SFU", nil, webrtc.ICETransportPolicyAll},
		{"behind NAT", []string{"MEDIA_PUBLIC_IP=127.0.0.2", "MEDIA_TURN_PUBLIC_HOST=127.0.0.1"}, webrtc.ICETransportPolicyRelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{"MEDIA_ICE_BIND_ADDR=127.0.0.1", "MEDIA_TURN_TCP_BIND_ADDR=127.0.0.1"}, tt.env...)
			s := startService(t, env...)
			exchangeThroughRelay(t, s, tt.second)
		})
	}
}

// exchangeThroughRelay joins a relay-only participant and one with the
// second policy, and checks that each receives the other's audio over
// the connections that policy implies.
func exchangeThroughRelay(t *testing.T, s *service, second webrtc.ICETransportPolicy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relayed := joinRoom(ctx, t, s, "turn-room", "relayed", webrtc.ICETransportPolicyRelay)
	other := joinRoom(ctx, t, s, "turn-room", "other", second)
	if urls := relayed.Joined().ICEServers; len(urls) == 0 || !strings.HasPrefix(urls[0].URLs[0], "turn:127.0.0.1:") {
		t.Fatalf("joined ICE servers = %+v; want this instance's TURN relay", urls)
	}
	publishAudio(ctx, t, relayed)
	publishAudio(ctx, t, other)

	for _, c := range []struct{ at, from *client.Client }{{other, relayed}, {relayed, other}} {
		if err := c.at.AwaitMedia(ctx, c.from.ID()); err != nil {
			t.Fatalf("media from %s at %s: %v", c.from.ID(), c.at.ID(), err)
		}
	}
	for name, pc := range map[string]*webrtc.PeerConnection{"publisher": relayed.Publisher(), "subscriber": relayed.Subscriber()} {
		if typ := selectedLocalType(pc); typ != webrtc.ICECandidateTypeRelay {
			t.Errorf("relay-only %s connection's local candidate type = %s; want relay", name, typ)
		}
	}
	if typ := selectedLocalType(other.Publisher()); second == webrtc.ICETransportPolicyAll && typ == webrtc.ICECandidateTypeRelay {
		t.Errorf("second publisher connection's local candidate type = relay; want a direct one")
	}
	metrics := scrape(t, s)
	t.Logf("turn metrics: %v", metrics)
	if got := metrics["media_turn_allocations_created_total"]; got < 2 {
		t.Errorf("media_turn_allocations_created_total = %v; want at least 2 (publisher and subscriber)", got)
	}
	if got := metrics["media_turn_relayed_bytes_total"]; got < 1000 {
		t.Errorf("media_turn_relayed_bytes_total = %v; want the media's bytes", got)
	}
	// The relay's only peer is the SFU's socket: every datagram is handed
	// over in memory, none takes the kernel. Media has begun to flow both
	// ways; on a loaded machine the first 50 packets each way may take
	// longer than that, so the counts are polled for.
	enough := func(p map[string]float64) bool { return p["to_peer/memory"] >= 50 && p["from_peer/memory"] >= 50 }
	packets := relayedPackets(t, s)
	for deadline := time.Now().Add(20 * time.Second); !enough(packets) && time.Now().Before(deadline); packets = relayedPackets(t, s) {
		time.Sleep(200 * time.Millisecond)
	}
	for _, dir := range []string{"to_peer", "from_peer"} {
		if got := packets[dir+"/memory"]; got < 50 {
			t.Errorf("media_turn_relayed_packets_total{direction=%q,path=\"memory\"} = %v; want the media's packets", dir, got)
		}
		if got := packets[dir+"/kernel"]; got != 0 {
			t.Errorf("media_turn_relayed_packets_total{direction=%q,path=\"kernel\"} = %v; want 0", dir, got)
		}
	}
}

// relayedPackets sums media_turn_relayed_packets_total by direction and
// path, keyed "direction/path".
func relayedPackets(t *testing.T, s *service) map[string]float64 {
	t.Helper()
	_, body := get(t, "http://"+s.OpsAddr+"/metrics")
	label := func(line, name string) string {
		_, v, _ := strings.Cut(line, name+`="`)
		v, _, _ = strings.Cut(v, `"`)
		return v
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "media_turn_relayed_packets_total{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			sums[label(line, "direction")+"/"+label(line, "path")] += v
		}
	}
	return sums
}

// joinRoom joins room as identity with a dev token through the Go client.
func joinRoom(ctx context.Context, t *testing.T, s *service, room, identity string, policy webrtc.ICETransportPolicy) *client.Client {
	t.Helper()
	code, body := get(t, fmt.Sprintf("http://%s/v1/dev/token?room=%s&identity=%s", s.HTTPAddr, room, identity))
	var tok struct{ Token string }
	if code != 200 || json.Unmarshal([]byte(body), &tok) != nil {
		t.Fatalf("GET /v1/dev/token = %d %s", code, body)
	}
	api, err := client.NewAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, "ws://"+s.HTTPAddr+"/v1/rtc", tok.Token, client.Options{API: api, ICETransportPolicy: policy})
	if err != nil {
		t.Fatalf("join %s as %s: %v", room, identity, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// publishAudio publishes an Opus track and writes a packet to it every
// 20 ms until the test ends.
func publishAudio(ctx context.Context, t *testing.T, c *client.Client) {
	t.Helper()
	track, err := client.NewAudioTrack("audio")
	if err != nil {
		t.Fatal(err)
	}
	publishSending(ctx, t, c, track)
}

// publishSending publishes track and writes a packet to it every 20 ms
// until the test ends.
func publishSending(ctx context.Context, t *testing.T, c *client.Client, track *webrtc.TrackLocalStaticRTP) {
	t.Helper()
	if _, err := c.Publish(ctx, track); err != nil {
		t.Fatalf("publish: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		// WriteRTP sets the payload type and SSRC the connection bound.
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 0x5eed}, Payload: make([]byte, 120)}
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pkt.SequenceNumber++
			pkt.Timestamp += 960
			_ = track.WriteRTP(pkt)
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// selectedLocalType is the type of the local candidate of pc's selected
// ICE pair, or "" before one is selected.
func selectedLocalType(pc *webrtc.PeerConnection) webrtc.ICECandidateType {
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() == nil && tr.Receiver() == nil {
			continue
		}
		var dtls *webrtc.DTLSTransport
		if tr.Sender() != nil {
			dtls = tr.Sender().Transport()
		} else {
			dtls = tr.Receiver().Transport()
		}
		if dtls == nil {
			continue
		}
		if pair, err := dtls.ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
			return pair.Local.Typ
		}
	}
	return webrtc.ICECandidateType(0)
}

// scrape sums each media_turn_* series of the ops /metrics by name.
func scrape(t *testing.T, s *service) map[string]float64 {
	t.Helper()
	code, body := get(t, "http://"+s.OpsAddr+"/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "media_turn_") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			sums[name] += v
		}
	}
	return sums
}

// TestDrainRefusesTURNAllocations checks the drain's wiring: after SIGTERM
// the relay refuses new allocations (508) with credentials from `joined`,
// and it is closed when the instance stops.
func TestDrainRefusesTURNAllocations(t *testing.T) {
	s := startService(t, "MEDIA_ICE_BIND_ADDR=127.0.0.1", "MEDIA_TURN_TCP_BIND_ADDR=127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := joinRoom(ctx, t, s, "drain-room", "walt", webrtc.ICETransportPolicyAll)
	ice := c.Joined().ICEServers[0]
	server := strings.TrimSuffix(strings.TrimPrefix(ice.URLs[0], "turn:"), "?transport=udp")
	allocate := func() error {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: server, Conn: conn,
			Username: ice.Username, Password: ice.Credential, RTO: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		if err := tc.Listen(); err != nil {
			t.Fatal(err)
		}
		relayed, err := tc.Allocate()
		if err == nil {
			relayed.Close()
		}
		return err
	}
	if err := allocate(); err != nil {
		t.Fatalf("Allocate at %s before the drain = %v; want a relayed address", server, err)
	}
	s.Signal(t, syscall.SIGTERM)
	s.WaitFor(t, "turn_draining", 5*time.Second)
	var te *stun.TurnError
	if err := allocate(); !errors.As(err, &te) || te.ErrorCodeAttr.Code != stun.CodeInsufficientCapacity {
		t.Errorf("Allocate while draining = %v; want 508 Insufficient Capacity", err)
	}
	c.Close()
	s.WaitFor(t, "turn_stopped", 10*time.Second)
	if code := s.WaitExit(t, 10*time.Second); code != 0 {
		t.Errorf("exit code after the drain = %d; want 0", code)
	}
}
