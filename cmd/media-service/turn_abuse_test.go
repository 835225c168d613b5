package main

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"
)

// The TURN relay's abuse cases, from the outside: credentials taken from a
// real `joined`, requests sent by a real TURN client to the running
// binary's relay. turn/policy_test.go and turn/server_test.go check every
// refused range and the quotas against the relay in-process; these prove
// the binary serves with that policy and those quotas wired in.

// turnAccess joins a room and returns the relay's UDP address and the
// participant's TURN credential from `joined`.
func turnAccess(t *testing.T, s *service, identity string) (addr, username, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := joinRoom(ctx, t, s, "turn-abuse", identity, webrtc.ICETransportPolicyAll)
	for _, srv := range c.Joined().ICEServers {
		for _, raw := range srv.URLs {
			if strings.HasSuffix(raw, "?transport=udp") {
				u, err := url.Parse(strings.Replace(raw, "turn:", "turn://", 1))
				if err != nil {
					t.Fatalf("TURN URL %q: %v", raw, err)
				}
				return u.Host, srv.Username, srv.Credential
			}
		}
	}
	t.Fatalf("joined has no TURN/UDP server: %+v", c.Joined().ICEServers)
	return "", "", ""
}

// dialTURN opens a TURN client on its own UDP socket.
func dialTURN(t *testing.T, addr, username, password string) *pionturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	c, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: addr, Conn: conn,
		Username: username, Password: password, RTO: 200 * time.Millisecond, LoggerFactory: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// turnCode is the STUN error code of a refused TURN request, or 0.
func turnCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	return 0
}

// mediaUDPAddr is the SFU's ICE UDP address from the service's log.
func mediaUDPAddr(t *testing.T, s *service) *net.UDPAddr {
	t.Helper()
	for _, l := range s.Log() {
		if l.Msg() == "media_engine_started" {
			a, err := net.ResolveUDPAddr("udp4", l["udp"].(string))
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
	}
	t.Fatal("no media_engine_started in the log")
	return nil
}

// TestTURNRefusesPeersFromOutside: through the binary's relay, a client
// may reach the instance's own media socket and nothing else: no other
// loopback address, no private network, not the cloud metadata address
// (refused at CreatePermission), and no other port on the media socket's
// own IP (permissions are per IP, so that is refused on each datagram).
// IPv4-mapped IPv6 peers cannot be sent from here (Go encodes them as
// IPv4 on the wire); turn/policy_test.go checks them in-process.
func TestTURNRefusesPeersFromOutside(t *testing.T) {
	s := startService(t, "MEDIA_ICE_BIND_ADDR=127.0.0.1", "MEDIA_TURN_RELAY_IP=127.0.0.1")
	addr, user, pass := turnAccess(t, s, "prober")
	c := dialTURN(t, addr, user, pass)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate with the credential from joined: %v", err)
	}
	defer relayed.Close()
	media := mediaUDPAddr(t, s)
	if err := c.CreatePermission(media); err != nil {
		t.Fatalf("CreatePermission(own media socket %s) = %v; want it allowed", media, err)
	}
	refused := []*net.UDPAddr{
		{IP: net.IPv4(127, 0, 0, 2), Port: media.Port},
		{IP: net.IPv4(10, 0, 0, 1), Port: 53},
		{IP: net.IPv4(192, 168, 1, 1), Port: 80},
		{IP: net.IPv4(169, 254, 169, 254), Port: 80},
	}
	for _, peer := range refused {
		if err := c.CreatePermission(peer); err == nil {
			t.Errorf("CreatePermission(%s) = nil; want it refused", peer)
		}
	}
	if got := metricSum(t, s, "media_turn_peer_refusals_total"); got != float64(len(refused)) {
		t.Errorf("media_turn_peer_refusals_total = %v; want %d", got, len(refused))
	}

	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	if _, err := relayed.WriteTo([]byte("attack"), victim.LocalAddr()); err != nil {
		t.Fatalf("WriteTo(another port of the media IP) = %v; want the permission granted (it is per IP)", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricSum(t, s, "media_turn_peer_refusals_total") != float64(len(refused)+1) {
		if time.Now().After(deadline) {
			t.Fatal("the datagram to another port of the media IP was not refused within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = victim.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := victim.ReadFrom(make([]byte, 64)); err == nil {
		t.Errorf("another port of the media IP received %d bytes through the relay; want none", n)
	}
}

// TestTURNAllocationFloodBounded: one identity's allocations stop at its
// quota with 486 Allocation Quota Reached, and other identities together
// stop at the instance's quota, however many sockets ask.
func TestTURNAllocationFloodBounded(t *testing.T) {
	const perIdentity, perInstance = 3, 5
	s := startService(t, "MEDIA_ICE_BIND_ADDR=127.0.0.1", "MEDIA_TURN_RELAY_IP=127.0.0.1",
		"MEDIA_TURN_MAX_ALLOCATIONS_PER_IDENTITY=3", "MEDIA_TURN_MAX_ALLOCATIONS=5")
	flood := func(identity string, n int) (granted int, refused []int) {
		addr, user, pass := turnAccess(t, s, identity)
		for range n {
			relayed, err := dialTURN(t, addr, user, pass).Allocate()
			if err != nil {
				refused = append(refused, turnCode(err))
				continue
			}
			t.Cleanup(func() { relayed.Close() })
			granted++
		}
		return granted, refused
	}
	if got, refused := flood("flooder", 10); got != perIdentity || !allCodes(refused, stun.CodeAllocQuotaReached) {
		t.Errorf("one identity's 10 allocations: %d granted, refusals %v; want %d granted, the rest 486", got, refused, perIdentity)
	}
	if got, refused := flood("second", 10); got != perInstance-perIdentity || !allCodes(refused, stun.CodeAllocQuotaReached) {
		t.Errorf("a second identity's 10 allocations: %d granted, refusals %v; want %d (the instance's quota), the rest 486", got, refused, perInstance-perIdentity)
	}
}

func allCodes(codes []int, want stun.ErrorCode) bool {
	for _, c := range codes {
		if c != int(want) {
			return false
		}
	}
	return len(codes) > 0
}
