package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// refusedPeers has an address in every range the relay must refuse by
// default, in IPv4, IPv6 and IPv4-mapped IPv6 form. 127.0.0.1 itself is
// the test SFU's address, so loopback is probed elsewhere in 127/8.
var refusedPeers = []struct {
	ip     string
	reason string
}{
	{"0.0.0.0", peerUnspecified},
	{"0.1.2.3", peerUnspecified},
	{"10.0.0.1", peerPrivate},
	{"10.255.255.254", peerPrivate},
	{"100.64.0.1", peerCGNAT},
	{"100.127.255.254", peerCGNAT},
	{"127.0.0.2", peerLoopback},
	{"127.255.255.254", peerLoopback},
	{"169.254.169.254", peerLinkLocal}, // cloud metadata
	{"172.16.0.1", peerPrivate},
	{"172.31.255.254", peerPrivate},
	{"192.0.0.8", peerReserved},
	{"192.0.2.1", peerReserved},
	{"192.168.1.1", peerPrivate},
	{"198.18.0.1", peerReserved},
	{"198.51.100.7", peerReserved},
	{"203.0.113.7", peerReserved},
	{"224.0.0.251", peerMulticast},
	{"239.255.255.250", peerMulticast},
	{"240.0.0.1", peerReserved},
	{"255.255.255.255", peerReserved},
	{"8.8.8.8", peerNotAllowed}, // public, but not this instance
	{"::", peerUnspecified},
	{"::1", peerLoopback},
	{"::7f00:1", peerReserved}, // IPv4-compatible 127.0.0.1
	{"64:ff9b::a00:1", peerReserved},
	{"64:ff9b:1::1", peerReserved},
	{"100::1", peerReserved},
	{"2001::1", peerReserved},
	{"2001:db8::1", peerReserved},
	{"2002:a00:1::1", peerReserved},
	{"fc00::1", peerPrivate},
	{"fdaa::2", peerPrivate},
	{"fe80::1", peerLinkLocal},
	{"fec0::1", peerLinkLocal},
	{"ff02::1", peerMulticast},
	{"2606:4700::1111", peerNotAllowed},
	{"::ffff:0.0.0.0", peerUnspecified},
	{"::ffff:10.0.0.1", peerPrivate},
	{"::ffff:100.64.0.1", peerCGNAT},
	{"::ffff:127.0.0.2", peerLoopback},
	{"::ffff:169.254.169.254", peerLinkLocal},
	{"::ffff:172.16.0.1", peerPrivate},
	{"::ffff:192.168.1.1", peerPrivate},
	{"::ffff:224.0.0.1", peerMulticast},
	{"::ffff:255.255.255.255", peerReserved},
	{"::ffff:8.8.8.8", peerNotAllowed},
}

// TestPeerPolicyRefusesPermissions asks the relay, over each client
// transport, for a permission to every refused range; each is refused and
// counted with its range.
func TestPeerPolicyRefusesPermissions(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	for _, transport := range []string{transportUDP, transportTCP} {
		t.Run(transport, func(t *testing.T) {
			ice := r.ICEServers("mallory")[0]
			c := turnClient(t, r, transport, ice.Username, ice.Credential)
			relayed, err := c.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer relayed.Close()
			for _, p := range refusedPeers {
				attrs := []attribute.KeyValue{attribute.String("transport", transport),
					attribute.String("reason", p.reason), attribute.String("stage", stagePermission)}
				before := r.counter(t, "media_turn_peer_refusals", attrs...)
				peer := &net.UDPAddr{IP: net.ParseIP(p.ip), Port: 9}
				if err := c.CreatePermission(peer); err == nil {
					t.Errorf("CreatePermission(%s) over %s succeeded; want it refused (%s)", p.ip, transport, p.reason)
				}
				if got := r.counter(t, "media_turn_peer_refusals", attrs...); got != before+1 {
					t.Errorf("media_turn_peer_refusals{reason=%s,stage=permission} after %s = %d; want %d", p.reason, p.ip, got, before+1)
				}
			}
			if err := c.CreatePermission(r.media.LocalAddr()); err != nil {
				t.Errorf("CreatePermission(own media address) = %v; want it granted", err)
			}
		})
	}
}

// TestRelayRefusesOtherPortsOfOwnIP checks the second line of defence: a
// permission for the SFU's IP does not open the host's other ports; the
// relayed socket refuses them on write, and drops what they send.
func TestRelayRefusesOtherPortsOfOwnIP(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	relayed, err := allocate(t, r, transportUDP, "oscar")
	if err != nil {
		t.Fatal(err)
	}
	victim, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	if _, err := relayed.WriteTo([]byte("attack"), victim.LocalAddr()); err != nil {
		t.Fatalf("client WriteTo = %v; the permission (by IP) should be granted", err)
	}
	write := []attribute.KeyValue{attribute.String("reason", peerLoopback), attribute.String("stage", stageWrite)}
	eventually(t, "the write to be refused", func() bool { return r.counter(t, "media_turn_peer_refusals", write...) == 1 })
	victim.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := victim.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("the other port received %d bytes through the relay; want none", n)
	}

	// The other port sends to the relayed address; the relay drops it.
	if _, err := victim.WriteTo([]byte("inbound"), relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	read := []attribute.KeyValue{attribute.String("reason", peerLoopback), attribute.String("stage", stageRead)}
	eventually(t, "the datagram to be dropped", func() bool { return r.counter(t, "media_turn_peer_refusals", read...) == 1 })
	if got, err := roundTrip(t, relayed, r.media.LocalAddr(), "own"); err != nil || got != "own" {
		t.Errorf("roundTrip to the media address = %q, %v; want the echo, not the dropped datagram", got, err)
	}
}

// TestAllowPeers opens loopback explicitly: the relay then reaches a
// socket that is not the media address.
func TestAllowPeers(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.AllowPeers = []string{"127.0.0.0/8"} })
	other := echoSocket(t)
	for _, transport := range []string{transportUDP, transportTCP} {
		relayed, err := allocate(t, r, transport, "peggy")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := roundTrip(t, relayed, other.LocalAddr(), "allowed"); err != nil || got != "allowed" {
			t.Errorf("roundTrip over %s to allow-listed %s = %q, %v; want the echo", transport, other.LocalAddr(), got, err)
		}
	}
}

// TestPolicyDecisions is the policy's table: own addresses, the special
// ranges, and what allow-list entries open.
func TestPolicyDecisions(t *testing.T) {
	media := []net.Addr{
		&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7882},
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7881},
		(*net.TCPAddr)(nil), // ICE-TCP off
	}
	public := []netip.Addr{netip.MustParseAddr("198.51.100.7")}
	allow, err := parsePrefixes([]string{"0.0.0.0/0", "::/0", "10.1.0.0/16", "::ffff:192.168.7.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	p := newPeerPolicy(media, public, nil, allow)
	tests := []struct {
		addr string
		want string
	}{
		{"127.0.0.1:7882", ""},          // own
		{"[::ffff:127.0.0.1]:7882", ""}, // own, mapped
		{"198.51.100.7:7882", ""},       // own public IP
		{"127.0.0.1:7881", peerLoopback},
		{"127.0.0.1:22", peerLoopback},
		{"198.51.100.7:22", peerReserved},
		{"8.8.8.8:3478", ""}, // opened by 0.0.0.0/0
		{"[2606:4700::1111]:3478", ""},
		{"10.1.2.3:5000", ""}, // opened by 10.1.0.0/16, inside 10/8
		{"10.2.0.1:5000", peerPrivate},
		{"192.168.7.9:5000", ""}, // opened by the mapped entry
		{"192.168.8.1:5000", peerPrivate},
		{"[::ffff:10.2.0.1]:5000", peerPrivate},
		{"[::1]:7882", peerLoopback},
		{"[fd00::1]:7882", peerPrivate},
		{"169.254.169.254:80", peerLinkLocal},
	}
	for _, tt := range tests {
		if got := p.permitAddr(netip.MustParseAddrPort(tt.addr)); got != tt.want {
			t.Errorf("permitAddr(%s) = %q; want %q", tt.addr, got, tt.want)
		}
	}
	if got := p.permitIP(netip.MustParseAddr("127.0.0.1")); got != "" {
		t.Errorf("permitIP(own 127.0.0.1) = %q; want permitted", got)
	}
}

// TestUnspecifiedMediaAddress checks that a media socket bound to every
// address makes every host address its own, on the media port only.
func TestUnspecifiedMediaAddress(t *testing.T) {
	host := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fdaa::3")}
	p := newPeerPolicy([]net.Addr{&net.UDPAddr{IP: net.IPv6unspecified, Port: 7882}}, nil, host, nil)
	for _, a := range []string{"127.0.0.1:7882", "10.0.0.5:7882", "[fdaa::3]:7882"} {
		if got := p.permitAddr(netip.MustParseAddrPort(a)); got != "" {
			t.Errorf("permitAddr(%s) = %q; want permitted (a host address on the media port)", a, got)
		}
	}
	for _, a := range []string{"10.0.0.5:22", "10.0.0.6:7882"} {
		if got := p.permitAddr(netip.MustParseAddrPort(a)); got == "" {
			t.Errorf("permitAddr(%s) permitted; want refused", a)
		}
	}
}

// TestRelayConnRefusesEveryRange writes through a relayed socket wrapper
// to every refused range: each write fails before it reaches the network.
func TestRelayConnRefusesEveryRange(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &relayConn{PacketConn: pc, s: r.Server, transport: transportUDP, bytes: r.metrics.bytes[transportUDP]}
	defer rc.Close()
	for _, p := range refusedPeers {
		_, err := rc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP(p.ip), Port: 9})
		if !errors.Is(err, errPeerRefused) {
			t.Errorf("relayConn.WriteTo(%s) = %v; want errPeerRefused", p.ip, err)
		}
	}
	if _, err := rc.WriteTo([]byte("x"), r.media.LocalAddr()); err != nil {
		t.Errorf("relayConn.WriteTo(media) = %v; want it sent", err)
	}
}

// TestParsePrefixes checks the allow-list syntax.
func TestParsePrefixes(t *testing.T) {
	got, err := parsePrefixes([]string{" 10.0.0.0/8 ", "", "::ffff:10.1.0.0/112", "2001:db8::/32"})
	want := []string{"10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("parsePrefixes = %v, %v; want %v", got, err, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("parsePrefixes[%d] = %s; want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.1", "10.0.0.0/33", "10.0.0.0/8/8", "example.com/8"} {
		if _, err := parsePrefixes([]string{bad}); err == nil {
			t.Errorf("parsePrefixes(%q) = nil error; want one", bad)
		}
	}
}

// TestShortcutToLocalMedia advertises a public address that is not on
// this host (127.0.0.2; nothing listens there): the relay delivers to the
// SFU's local socket and the reply comes back as from the public address.
func TestShortcutToLocalMedia(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.PublicIPs = []string{"127.0.0.2"} })
	public := &net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: r.media.LocalAddr().(*net.UDPAddr).Port}
	for _, transport := range []string{transportUDP, transportTCP} {
		relayed, err := allocate(t, r, transport, "uma")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := roundTrip(t, relayed, public, "via the shortcut"); err != nil || got != "via the shortcut" {
			t.Errorf("roundTrip over %s to the public media address %s = %q, %v; want the echo from it", transport, public, got, err)
		}
	}
}

func TestNewShortcut(t *testing.T) {
	media := []net.Addr{&net.UDPAddr{IP: net.IPv4zero, Port: 7882}, &net.TCPAddr{IP: net.IPv4zero, Port: 7881}}
	host := []netip.Addr{netip.MustParseAddr("172.19.0.5"), netip.MustParseAddr("127.0.0.1")}
	relayIP := netip.MustParseAddr("172.19.0.5")
	pub := func(s ...string) []netip.Addr {
		var ips []netip.Addr
		for _, x := range s {
			ips = append(ips, netip.MustParseAddr(x))
		}
		return ips
	}
	tests := []struct {
		name   string
		public []netip.Addr
		want   map[string]string // public to local
	}{
		{"one public IPv4", pub("198.51.100.7", "2001:db8::7"), map[string]string{"198.51.100.7:7882": "172.19.0.5:7882"}},
		{"none", nil, map[string]string{}},
		{"public IP on this host", pub("172.19.0.5"), map[string]string{}},
		{"two public IPv4", pub("198.51.100.7", "198.51.100.8"), map[string]string{}},
	}
	for _, tt := range tests {
		sc := newShortcut(media, tt.public, host, relayIP)
		got := map[string]string{}
		for p, l := range sc.toLocal {
			got[p.String()] = l.String()
			if sc.toPublic[l] != p {
				t.Errorf("%s: toPublic[%s] = %s; want %s", tt.name, l, sc.toPublic[l], p)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: newShortcut = %v; want %v", tt.name, got, tt.want)
		}
	}
}
