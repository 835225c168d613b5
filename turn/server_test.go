package turn

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its tests: every
// listener, allocation and connection of the relay must end with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func withTLS(t *testing.T) func(*Config) {
	cert, key := writeTestCert(t)
	return func(c *Config) { c.TLSCert, c.TLSKey = cert, key }
}

// TestRelayToMedia allocates with minted credentials over every client
// transport and exchanges datagrams with the SFU's media address through
// the relay.
func TestRelayToMedia(t *testing.T) {
	r := startRelay(t, withTLS(t))
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			relayed, err := allocate(t, r, transport, "alice-"+transport)
			if err != nil {
				t.Fatalf("Allocate over %s = %v; want a relayed address", transport, err)
			}
			if got := relayed.LocalAddr().(*net.UDPAddr).IP.String(); got != "127.0.0.1" {
				t.Errorf("relayed address IP = %s; want the relay IP 127.0.0.1", got)
			}
			for i := range 3 {
				msg := fmt.Sprintf("ping %d over %s", i, transport)
				got, err := roundTrip(t, relayed, r.media.LocalAddr(), msg)
				if err != nil || got != msg {
					t.Fatalf("roundTrip(%q) = %q, %v; want the echo", msg, got, err)
				}
			}
			tr := attribute.String("transport", transport)
			if got := r.counter(t, "media_turn_allocations_created", tr); got != 1 {
				t.Errorf("media_turn_allocations_created{transport=%s} = %d; want 1", transport, got)
			}
			if got := r.counter(t, "media_turn_allocations_active", tr); got != 1 {
				t.Errorf("media_turn_allocations_active{transport=%s} = %d; want 1", transport, got)
			}
			// The relay counts a datagram's bytes after its write returns,
			// which may be after the echo has already come back.
			want := 3 * int64(len("ping 0 over udp"))
			for _, dir := range []string{toPeer, fromPeer} {
				eventually(t, fmt.Sprintf("media_turn_relayed{transport=%s,direction=%s} to count 3 pings", transport, dir), func() bool {
					return r.counter(t, "media_turn_relayed", tr, attribute.String("direction", dir)) == want
				})
			}
		})
	}
}

// TestICEServers checks the URLs and that the credential is the TURN REST
// API one: "expiry:identity" and base64(HMAC-SHA1(secret, username)).
func TestICEServers(t *testing.T) {
	r := startRelay(t, withTLS(t))
	before := time.Now()
	ice := r.ICEServers("carol:with:colons")
	if len(ice) != 1 {
		t.Fatalf("ICEServers = %d servers; want 1", len(ice))
	}
	want := []string{
		fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", r.UDPAddr().Port),
		fmt.Sprintf("turn:127.0.0.1:%d?transport=tcp", r.TCPAddr().Port),
		fmt.Sprintf("turns:127.0.0.1:%d?transport=tcp", r.TLSAddr().Port),
	}
	if got := strings.Join(ice[0].URLs, " "); got != strings.Join(want, " ") {
		t.Errorf("ICEServers URLs = %s; want %s", got, strings.Join(want, " "))
	}
	expiry, identity, ok := parseUsername(ice[0].Username)
	if !ok || identity != "carol:with:colons" {
		t.Fatalf("parseUsername(%q) = %q, %v; want identity carol:with:colons", ice[0].Username, identity, ok)
	}
	if lo, hi := before.Add(10*time.Minute-time.Second), time.Now().Add(10*time.Minute+time.Second); expiry.Before(lo) || expiry.After(hi) {
		t.Errorf("credential expiry = %s; want 10m from now", expiry)
	}
	c := credentials{secret: []byte(testSecret)}
	if got := c.password(ice[0].Username); got != ice[0].Credential {
		t.Errorf("credential = %q; want base64 HMAC-SHA1 %q", ice[0].Credential, got)
	}
	if got := r.ICEServers(""); got != nil {
		t.Errorf("ICEServers(\"\") = %v; want nil", got)
	}
}

// TestURLsWithPublicHost checks the advertised host and the TLS public port.
func TestURLsWithPublicHost(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"public host", func(c *Config) { c.PublicHost = "turn.example.com" }, "turn.example.com"},
		{"public ip", func(c *Config) { c.PublicIPs = []string{"2001:db8::7"} }, "[2001:db8::7]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, key := writeTestCert(t)
			r := startRelay(t, func(c *Config) {
				tt.cfg(c)
				c.TLSCert, c.TLSKey, c.TLSPublicPort = cert, key, 443
			})
			urls := r.ICEServers("dave")[0].URLs
			wantTLS := "turns:" + tt.want + ":443?transport=tcp"
			if !strings.HasPrefix(urls[0], "turn:"+tt.want+":") || urls[2] != wantTLS {
				t.Errorf("URLs = %v; want host %s and %s", urls, tt.want, wantTLS)
			}
		})
	}
}

// TestCredentialsRefused tries credentials that must not allocate.
func TestCredentialsRefused(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	good := r.ICEServers("erin")[0]
	expiredUser, expiredPass := r.creds.mint("erin", time.Now().Add(-time.Hour))
	farUser, farPass := r.creds.mint("erin", time.Now().Add(2*time.Hour))
	otherSecret := credentials{secret: []byte("another secret, another instance")}
	tests := []struct {
		name, username, password, reason string
	}{
		{"expired", expiredUser, expiredPass, authExpired},
		{"forged password", good.Username, "bm90IHRoZSByaWdodCBwYXNzd29yZA==", authBadIntegrity},
		{"other secret", good.Username, otherSecret.password(good.Username), authBadIntegrity},
		{"identity swapped", strings.Replace(good.Username, "erin", "frank", 1), good.Credential, authBadIntegrity},
		{"no expiry", "erin", r.creds.password("erin"), authMalformed},
		{"expiry beyond the TTL", farUser, farPass, authTooFar},
	}
	for _, transport := range []string{transportUDP, transportTCP} {
		for _, tt := range tests {
			t.Run(transport+"/"+tt.name, func(t *testing.T) {
				attrs := []attribute.KeyValue{attribute.String("transport", transport), attribute.String("reason", tt.reason)}
				before := r.counter(t, "media_turn_auth_failures", attrs...)
				c := turnClient(t, r, transport, tt.username, tt.password)
				if relayed, err := c.Allocate(); err == nil {
					relayed.Close()
					t.Fatalf("Allocate(%s) succeeded; want it refused", tt.name)
				}
				if got := r.counter(t, "media_turn_auth_failures", attrs...); got != before+1 {
					t.Errorf("media_turn_auth_failures{reason=%s} = %d; want %d", tt.reason, got, before+1)
				}
			})
		}
	}
	if got := r.ledger.count(); got != 0 {
		t.Errorf("allocations after refused credentials = %d; want 0", got)
	}
}

// TestWrongRealmRefused sends an Allocate whose integrity is computed
// correctly, but for another realm. Pion's client always takes the
// server's realm, so the request is built by hand.
func TestWrongRealmRefused(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	ice := r.ICEServers("grace")[0]
	conn, err := net.DialUDP("udp4", nil, r.UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	requestedUDP := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	first := exchange(t, conn, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP)
	var nonce stun.Nonce
	if err := nonce.GetFrom(first); err != nil {
		t.Fatalf("first Allocate answer has no nonce: %v", err)
	}
	res := exchange(t, conn, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP,
		stun.NewUsername(ice.Username), stun.NewRealm("evil.example"), nonce,
		stun.NewLongTermIntegrity(ice.Username, "evil.example", ice.Credential), stun.Fingerprint)
	if res.Type.Class != stun.ClassErrorResponse {
		t.Fatalf("Allocate with realm evil.example answered %s; want an error", res.Type)
	}
	if got := r.counter(t, "media_turn_auth_failures", attribute.String("reason", authWrongRealm)); got != 1 {
		t.Errorf("media_turn_auth_failures{reason=wrong_realm} = %d; want 1", got)
	}
}

// exchange sends one STUN request on conn and returns the answer.
func exchange(t *testing.T, conn *net.UDPConn, setters ...stun.Setter) *stun.Message {
	t.Helper()
	req := stun.MustBuild(setters...)
	if _, err := conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read STUN answer: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil {
		t.Fatalf("decode STUN answer: %v", err)
	}
	return res
}

// TestExpiredCredentialKeepsItsAllocation checks that a credential that
// expires during a call still serves its own allocation (permissions,
// refreshes) for a bounded time, while it can no longer start a new one.
func TestExpiredCredentialKeepsItsAllocation(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	ice := r.ICEServers("heidi")[0]
	c := turnClient(t, r, transportUDP, ice.Username, ice.Credential)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate = %v", err)
	}
	defer relayed.Close()
	r.clock.advance(time.Hour)
	if err := c.CreatePermission(r.media.LocalAddr()); err != nil {
		t.Errorf("CreatePermission after expiry on the credential's own allocation = %v; want nil", err)
	}
	if got, err := roundTrip(t, relayed, r.media.LocalAddr(), "still here"); err != nil || got != "still here" {
		t.Errorf("roundTrip after expiry = %q, %v; want the echo", got, err)
	}
	r.clock.advance(MaxCredentialTTL)
	if err := c.CreatePermission(r.media.LocalAddr()); err == nil {
		t.Errorf("CreatePermission more than %s after expiry = nil; want the credential refused at last", MaxCredentialTTL)
	}
	other := turnClient(t, r, transportUDP, ice.Username, ice.Credential)
	if relayed2, err := other.Allocate(); err == nil {
		relayed2.Close()
		t.Errorf("new Allocate with an expired credential succeeded; want it refused")
	}
}

// TestIdentityQuota fills one identity's quota; the next allocation is
// refused with 486 while another identity still gets one.
func TestIdentityQuota(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	var held []net.PacketConn
	for i := range 10 {
		relayed, err := allocate(t, r, transports[i%2], "ivan")
		if err != nil {
			t.Fatalf("allocation %d of ivan = %v; want it within the quota", i+1, err)
		}
		held = append(held, relayed)
	}
	for _, transport := range []string{transportUDP, transportTCP} {
		if _, err := allocate(t, r, transport, "ivan"); turnCode(err) != int(stun.CodeAllocQuotaReached) {
			t.Errorf("11th allocation of ivan over %s = %v; want 486 Allocation Quota Reached", transport, err)
		}
	}
	if _, err := allocate(t, r, transportUDP, "judy"); err != nil {
		t.Errorf("allocation of judy = %v; want it, ivan's quota is his own", err)
	}
	if got := r.counter(t, "media_turn_allocation_refusals", attribute.String("reason", refusedIdentityQuota)); got != 2 {
		t.Errorf("media_turn_allocation_refusals{reason=identity_quota} = %d; want 2", got)
	}
	held[0].Close() // deallocates: the slot comes back
	eventually(t, "ivan's slot to be given back", func() bool { return r.ledger.count() == 10 })
	if _, err := allocate(t, r, transportUDP, "ivan"); err != nil {
		t.Errorf("allocation of ivan after one closed = %v; want it", err)
	}
}

// TestInstanceQuota fills the instance's quota with distinct identities.
func TestInstanceQuota(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.MaxAllocations = 3 })
	for i := range 3 {
		if _, err := allocate(t, r, transportUDP, fmt.Sprintf("user%d", i)); err != nil {
			t.Fatalf("allocation %d = %v; want it within the quota", i+1, err)
		}
	}
	if _, err := allocate(t, r, transportTCP, "user3"); turnCode(err) != int(stun.CodeAllocQuotaReached) {
		t.Errorf("4th allocation = %v; want 486 Allocation Quota Reached", err)
	}
	if got := r.counter(t, "media_turn_allocation_refusals", attribute.String("reason", refusedInstanceQuota)); got != 1 {
		t.Errorf("media_turn_allocation_refusals{reason=instance_quota} = %d; want 1", got)
	}
}

// TestDrain checks that Drain refuses new allocations with 508 while live
// ones keep relaying, and that Close ends them.
func TestDrain(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	live, err := allocate(t, r, transportUDP, "ken")
	if err != nil {
		t.Fatal(err)
	}
	r.Drain()
	r.Drain()
	for _, transport := range []string{transportUDP, transportTCP} {
		if _, err := allocate(t, r, transport, "laura"); turnCode(err) != int(stun.CodeInsufficientCapacity) {
			t.Errorf("Allocate over %s while draining = %v; want 508 Insufficient Capacity", transport, err)
		}
	}
	if got := r.counter(t, "media_turn_allocation_refusals", attribute.String("reason", refusedDraining)); got != 2 {
		t.Errorf("media_turn_allocation_refusals{reason=draining} = %d; want 2", got)
	}
	if got, err := roundTrip(t, live, r.media.LocalAddr(), "draining"); err != nil || got != "draining" {
		t.Errorf("roundTrip on a live allocation while draining = %q, %v; want the echo", got, err)
	}
	relayAddr := live.LocalAddr().(*net.UDPAddr)
	if err := r.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if got := r.ledger.count(); got != 0 {
		t.Errorf("allocations after Close = %d; want 0", got)
	}
	// The relayed socket is gone: its port can be bound again.
	pc, err := net.ListenUDP("udp4", relayAddr)
	if err != nil {
		t.Errorf("bind the relayed address %s after Close = %v; want it free", relayAddr, err)
	} else {
		pc.Close()
	}
	if r.Close() != nil {
		t.Errorf("second Close returned an error; want nil")
	}
}

// TestCloseEndsTCPConnections checks that Close ends client connections,
// which Pion itself leaves open.
func TestCloseEndsTCPConnections(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	conn, err := net.Dial("tcp", r.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	eventually(t, "the connection to be accepted", func() bool {
		r.conns.mu.Lock()
		defer r.conns.mu.Unlock()
		return r.conns.total == 1
	})
	r.Close()
	// Only EOF or a reset show that the server closed it; the deadline's
	// os.ErrDeadlineExceeded would mean Close left it open.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Read after Close = %v; want EOF or a reset (the server closed the connection)", err)
	}
}

// TestPortTaken checks that New fails, naming the variable, when a port
// is taken.
func TestPortTaken(t *testing.T) {
	udp, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tests := []struct {
		name string
		cfg  func(*Config)
	}{
		{"MEDIA_TURN_UDP_PORT", func(c *Config) { c.UDPPort = udp.LocalAddr().(*net.UDPAddr).Port }},
		{"MEDIA_TURN_TCP_PORT", func(c *Config) { c.TCPPort = tcp.Addr().(*net.TCPAddr).Port }},
	}
	for _, tt := range tests {
		cfg := testConfig()
		tt.cfg(&cfg)
		if _, err := New(cfg, Options{Log: discardLog()}); err == nil || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("New with a taken %s = %v; want an error naming it", tt.name, err)
		}
	}
}
