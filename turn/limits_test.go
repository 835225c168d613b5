package turn

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/pion/stun/v3"
	"go.opentelemetry.io/otel/attribute"
)

// TestUnauthenticatedRateLimit floods the relay with binding requests
// from one source: only the burst is answered, and a client that holds an
// allocation from the same IP is not held back.
func TestUnauthenticatedRateLimit(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.UnauthBurst, c.UnauthRate = 5, 0.001 })
	ice := r.ICEServers("quentin")[0]
	c := turnClient(t, r, transportUDP, ice.Username, ice.Credential)
	relayed, err := c.Allocate() // two requests: the 401 round and the authenticated one
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()

	flood, err := net.DialUDP("udp4", nil, r.UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	const sent, answerable = 10, 3
	for range sent {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := flood.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the flood to be rate limited", func() bool {
		return r.counter(t, "media_turn_rate_limited") == sent-answerable
	})
	answers := 0
	flood.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for buf := make([]byte, 1500); ; answers++ {
		if _, err := flood.Read(buf); err != nil {
			break
		}
	}
	if answers != answerable {
		t.Errorf("binding requests answered = %d of %d; want the rest of the burst, %d", answers, sent, answerable)
	}
	if err := c.CreatePermission(r.media.LocalAddr()); err != nil {
		t.Errorf("CreatePermission on a live allocation after the flood = %v; want it answered", err)
	}
}

func TestIsSTUNRequest(t *testing.T) {
	msg := func(typ stun.MessageType) []byte { return stun.MustBuild(stun.TransactionID, typ).Raw }
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"binding request", msg(stun.BindingRequest), true},
		{"allocate request", msg(stun.NewType(stun.MethodAllocate, stun.ClassRequest)), true},
		{"send indication", msg(stun.NewType(stun.MethodSend, stun.ClassIndication)), false},
		{"success response", msg(stun.BindingSuccess), false},
		{"error response", msg(stun.BindingError), false},
		{"channel data", append([]byte{0x40, 0x00, 0x00, 0x10}, make([]byte, 16)...), false},
		{"short", []byte{0, 1, 0, 0}, false},
		{"no magic cookie", append([]byte{0, 1, 0, 0, 1, 2, 3, 4}, make([]byte, 12)...), false},
	}
	for _, tt := range tests {
		if got := isSTUNRequest(tt.b); got != tt.want {
			t.Errorf("isSTUNRequest(%s) = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLimiter(1, 3, func() time.Time { return now })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		if !l.allow(a) {
			t.Fatalf("allow #%d within the burst = false; want true", i+1)
		}
	}
	if l.allow(a) {
		t.Errorf("allow beyond the burst = true; want false")
	}
	if !l.allow(b) {
		t.Errorf("allow for another source = false; want true")
	}
	now = now.Add(time.Second)
	if !l.allow(a) {
		t.Errorf("allow a second later = false; want one token refilled")
	}
	l.charge(a) // a failed authentication
	l.charge(a)
	now = now.Add(time.Second)
	if l.allow(a) {
		t.Errorf("allow after two charges and one second = true; want the debt paid first")
	}
}

func TestLimiterBoundsSources(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLimiter(1, 2, func() time.Time { return now })
	for i := range maxSources {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	fresh := netip.MustParseAddr("192.0.2.9")
	if l.allow(fresh) {
		t.Errorf("allow for a new source with the table full of busy sources = true; want false")
	}
	now = now.Add(10 * time.Second) // every bucket refills: forgettable
	if !l.allow(fresh) {
		t.Errorf("allow for a new source after the others went quiet = false; want true")
	}
	if got := len(l.buckets); got != 1 {
		t.Errorf("sources remembered after the sweep = %d; want 1", got)
	}
}

// TestConnectionBounds opens TCP connections beyond the bounds; the excess
// one is closed at once and counted.
func TestConnectionBounds(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func(*Config)
		reason string
	}{
		{"per ip", func(c *Config) { c.MaxConnsPerIP = 2 }, connPerIP},
		{"total", func(c *Config) { c.MaxConns = 2 }, connTotal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, tt.cfg)
			var conns []net.Conn
			for range 3 {
				c, err := net.Dial("tcp", r.TCPAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns = append(conns, c)
			}
			eventually(t, "the third connection to be refused", func() bool {
				return r.counter(t, "media_turn_conn_refusals", attribute.String("reason", tt.reason)) == 1
			})
			closed := 0
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
					closed++
				}
			}
			if closed != 1 {
				t.Errorf("connections closed by the relay = %d of 3; want 1", closed)
			}
		})
	}
}

// TestIdleConnectionClosed leaves a TCP connection silent past the idle
// timeout.
func TestIdleConnectionClosed(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.ConnIdleTimeout = time.Second })
	c, err := net.Dial("tcp", r.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("Read on a silent connection = %v; want EOF from the idle timeout", err)
	}
	if took := time.Since(start); took < time.Second/2 {
		t.Errorf("silent connection closed after %s; want about the 1s idle timeout", took)
	}
}

// TestConfigDefaults parses an empty environment: the defaults validate.
func TestConfigDefaults(t *testing.T) {
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Environment: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate(defaults) = %v; want nil", err)
	}
	if !cfg.Enabled || cfg.UDPPort != 3478 || cfg.TCPPort != 3478 || cfg.TLSPort != 5349 ||
		cfg.CredentialTTL != time.Hour || cfg.MaxAllocationsPerIdentity != 10 || cfg.Realm != "media-service" ||
		cfg.MaxAllocations != 4000 || cfg.UnauthRate != 20 || cfg.UnauthBurst != 100 ||
		cfg.MaxConns != 4000 || cfg.MaxConnsPerIP != 64 ||
		cfg.ConnIdleTimeout != 2*time.Minute || cfg.ConnAllocateTimeout != 30*time.Second {
		t.Errorf("defaults = %+v; want the documented ones", cfg)
	}
}

// TestConfigValidate checks that each bad value stops the start with an
// error naming its variable.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
	}{
		{"MEDIA_TURN_UDP_PORT", func(c *Config) { c.UDPPort = 70000 }},
		{"MEDIA_TURN_TCP_PORT", func(c *Config) { c.TCPPort = -2 }},
		{"MEDIA_TURN_TLS_PORT", func(c *Config) { c.TLSPort = -1 }},
		{"MEDIA_TURN_UDP_PORT", func(c *Config) { c.UDPPort, c.TCPPort = -1, -1 }},
		{"MEDIA_TURN_TLS_KEY", func(c *Config) { c.TLSCert = "cert.pem" }},
		{"MEDIA_TURN_TLS_CERT", func(c *Config) { c.TLSCert, c.TLSKey = "/nonexistent/cert.pem", "/nonexistent/key.pem" }},
		{"MEDIA_TURN_RELAY_PORT_MIN", func(c *Config) { c.RelayPortMin = 50000 }},
		{"MEDIA_TURN_RELAY_PORT_MAX", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 50010, 50000 }},
		{"MEDIA_PUBLIC_IP", func(c *Config) { c.PublicIPs = []string{"turn.example.com"} }},
		{"MEDIA_TURN_RELAY_IP", func(c *Config) { c.RelayIP = "::1" }},
		{"MEDIA_TURN_RELAY_IP", func(c *Config) { c.RelayIP = "0.0.0.0" }},
		{"MEDIA_TURN_RELAY_BIND_ADDR", func(c *Config) { c.RelayBindAddr = "localhost" }},
		{"MEDIA_TURN_RELAY_BIND_ADDR", func(c *Config) { c.RelayBindAddr = "::" }},
		{"MEDIA_TURN_ALLOW_PEERS", func(c *Config) { c.AllowPeers = []string{"10.0.0.1"} }},
		{"MEDIA_TURN_REALM", func(c *Config) { c.Realm = "" }},
		{"MEDIA_TURN_SECRET", func(c *Config) { c.Secret = "short" }},
		{"MEDIA_TURN_CREDENTIAL_TTL", func(c *Config) { c.CredentialTTL = 25 * time.Hour }},
		{"MEDIA_TURN_CREDENTIAL_TTL", func(c *Config) { c.CredentialTTL = time.Second }},
		{"MEDIA_TURN_MAX_ALLOCATIONS_PER_IDENTITY", func(c *Config) { c.MaxAllocationsPerIdentity = 0 }},
		{"MEDIA_TURN_MAX_ALLOCATIONS", func(c *Config) { c.MaxAllocations = 0 }},
		{"MEDIA_TURN_UNAUTH_RATE", func(c *Config) { c.UnauthRate = 0 }},
		{"MEDIA_TURN_UNAUTH_BURST", func(c *Config) { c.UnauthBurst = 0 }},
		{"MEDIA_TURN_MAX_CONNS", func(c *Config) { c.MaxConns = 0 }},
		{"MEDIA_TURN_MAX_CONNS_PER_IP", func(c *Config) { c.MaxConnsPerIP = 0 }},
		{"MEDIA_TURN_CONN_IDLE_TIMEOUT", func(c *Config) { c.ConnIdleTimeout = 0 }},
		{"MEDIA_TURN_CONN_ALLOCATE_TIMEOUT", func(c *Config) { c.ConnAllocateTimeout = time.Millisecond }},
	}
	for _, tt := range tests {
		cfg := testConfig()
		tt.cfg(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("Validate() with a bad %s = %v; want an error naming it", tt.name, err)
		}
		_, err := New(cfg, Options{Log: discardLog()})
		if err == nil || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("New with a bad %s = %v; want an error naming it", tt.name, err)
		}
	}
}

// flakyListener fails its first accepts the way a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestAcceptErrorsAreRiddenOver checks that TURN/TCP keeps serving after
// transient accept errors, which would end Pion's accept loop for good.
func TestAcceptErrorsAreRiddenOver(t *testing.T) {
	var flaky *flakyListener
	r := startRelayWith(t, func(*Config) {}, func(s *Server) {
		flaky = &flakyListener{Listener: s.ln.tcp.Listener}
		flaky.failures.Store(3)
		s.ln.tcp.Listener = flaky
	})
	relayed, err := allocate(t, r, transportTCP, "trent")
	if err != nil {
		t.Fatalf("Allocate over TCP after accept errors = %v; want it served", err)
	}
	if got, err := roundTrip(t, relayed, r.media.LocalAddr(), "after EMFILE"); err != nil || got != "after EMFILE" {
		t.Errorf("roundTrip = %q, %v; want the echo", got, err)
	}
	if n := flaky.failures.Load(); n >= 0 {
		t.Errorf("accept failures left = %d; want all 3 used", n+1)
	}
}

// TestRelayPortRange confines relayed sockets to a one-port range: the
// first allocation gets that port, the next finds none free (508).
func TestRelayPortRange(t *testing.T) {
	probe, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	r := startRelay(t, func(c *Config) { c.RelayPortMin, c.RelayPortMax = port, port })
	relayed, err := allocate(t, r, transportUDP, "victor")
	if err != nil {
		t.Fatalf("Allocate with relay ports %d-%d = %v", port, port, err)
	}
	if got := relayed.LocalAddr().(*net.UDPAddr).Port; got != port {
		t.Errorf("relayed port = %d; want %d, the only one in range", got, port)
	}
	if _, err := allocate(t, r, transportUDP, "walter"); turnCode(err) != int(stun.CodeInsufficientCapacity) {
		t.Errorf("Allocate with the range used up = %v; want 508 Insufficient Capacity", err)
	}
	// The server gives the reservation back just after it answers.
	eventually(t, "the failed allocation's reservation to be given back", func() bool { return r.ledger.count() == 1 })
}

// TestUnallocatedConnectionClosed checks that a TCP connection that holds
// no allocation is closed after ConnAllocateTimeout, and one that does is
// kept.
func TestUnallocatedConnectionClosed(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.ConnAllocateTimeout = time.Second })
	idle, err := net.Dial("tcp", r.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("Read on a connection without an allocation = %v; want EOF", err)
	}
	noAlloc := attribute.String("reason", connNoAlloc)
	if got := r.counter(t, "media_turn_conn_refusals", noAlloc); got != 1 {
		t.Errorf("media_turn_conn_refusals{reason=no_allocation} = %d; want 1", got)
	}

	relayed, err := allocate(t, r, transportTCP, "xavier")
	if err != nil {
		t.Fatal(err)
	}
	var open []*trackedConn
	eventually(t, "only the allocating connection to be open", func() bool {
		open = keys(&r.conns.mu, r.conns.open)
		return len(open) == 1
	})
	r.ln.tcp.closeUnallocated(open[0]) // as its timer would
	// Longer than 4 bytes: Pion's STUNConn takes a ChannelData frame under
	// 9 bytes for an incomplete one and holds it until more data comes.
	if got, err := roundTrip(t, relayed, r.media.LocalAddr(), "kept open"); err != nil || got != "kept open" {
		t.Errorf("roundTrip on an allocating connection after the check = %q, %v; want the echo", got, err)
	}
	if got := r.counter(t, "media_turn_conn_refusals", noAlloc); got != 1 {
		t.Errorf("media_turn_conn_refusals{reason=no_allocation} = %d; want still 1", got)
	}
}
