package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Peer refusal reasons, the reason attribute of media_turn_peer_refusals:
// the special-purpose range a refused peer is in, or not_allowed for an
// ordinary address that is neither ours nor allow-listed.
const (
	peerUnspecified = "unspecified"
	peerLoopback    = "loopback"
	peerPrivate     = "private"
	peerCGNAT       = "cgnat"
	peerLinkLocal   = "link_local"
	peerMulticast   = "multicast"
	peerReserved    = "reserved"
	peerNotAllowed  = "not_allowed"
)

// specialRange is an address range an open relay must never reach by
// accident: this host, its private networks, cloud metadata services,
// multicast, and IPv6 forms that embed an IPv4 address.
type specialRange struct {
	prefix netip.Prefix
	reason string
}

// specialRanges lists them. IPv4-mapped IPv6 (::ffff:0:0/96) is not here:
// addresses are unmapped before they are classified, so a mapped address
// is judged as the IPv4 address it is.
var specialRanges = []specialRange{
	{netip.MustParsePrefix("0.0.0.0/8"), peerUnspecified},
	{netip.MustParsePrefix("10.0.0.0/8"), peerPrivate},
	{netip.MustParsePrefix("100.64.0.0/10"), peerCGNAT},
	{netip.MustParsePrefix("127.0.0.0/8"), peerLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), peerLinkLocal},
	{netip.MustParsePrefix("172.16.0.0/12"), peerPrivate},
	{netip.MustParsePrefix("192.0.0.0/24"), peerReserved},
	{netip.MustParsePrefix("192.0.2.0/24"), peerReserved},
	{netip.MustParsePrefix("192.168.0.0/16"), peerPrivate},
	{netip.MustParsePrefix("198.18.0.0/15"), peerReserved},
	{netip.MustParsePrefix("198.51.100.0/24"), peerReserved},
	{netip.MustParsePrefix("203.0.113.0/24"), peerReserved},
	{netip.MustParsePrefix("224.0.0.0/4"), peerMulticast},
	{netip.MustParsePrefix("240.0.0.0/4"), peerReserved}, // with 255.255.255.255
	{netip.MustParsePrefix("::/128"), peerUnspecified},
	{netip.MustParsePrefix("::1/128"), peerLoopback},
	{netip.MustParsePrefix("::/96"), peerReserved}, // IPv4-compatible, deprecated
	{netip.MustParsePrefix("64:ff9b::/96"), peerReserved},
	{netip.MustParsePrefix("64:ff9b:1::/48"), peerReserved},
	{netip.MustParsePrefix("100::/64"), peerReserved},
	{netip.MustParsePrefix("2001::/32"), peerReserved}, // Teredo
	{netip.MustParsePrefix("2001:db8::/32"), peerReserved},
	{netip.MustParsePrefix("2002::/16"), peerReserved}, // 6to4
	{netip.MustParsePrefix("fc00::/7"), peerPrivate},
	{netip.MustParsePrefix("fe80::/10"), peerLinkLocal},
	{netip.MustParsePrefix("fec0::/10"), peerLinkLocal}, // site-local, deprecated
	{netip.MustParsePrefix("ff00::/8"), peerMulticast},
}

// special returns the most specific special range ip is in.
func special(ip netip.Addr) (specialRange, bool) {
	var best specialRange
	found := false
	for _, r := range specialRanges {
		if r.prefix.Contains(ip) && (!found || r.prefix.Bits() > best.prefix.Bits()) {
			best, found = r, true
		}
	}
	return best, found
}

// peerPolicy decides which peers a relay may exchange packets with. By
// default the only legitimate peer of a relay embedded in an SFU is the
// SFU itself, so only this instance's own media addresses pass; operators
// may open more ranges with MEDIA_TURN_ALLOW_PEERS. It is immutable after
// newPeerPolicy, so every listener's goroutines share it without a lock.
type peerPolicy struct {
	ownIPs   map[netip.Addr]bool     // the IPs the SFU's media sockets answer on
	ownAddrs map[netip.AddrPort]bool // those IPs on the SFU's UDP media ports
	allow    []netip.Prefix
}

// newPeerPolicy builds the policy. media are the SFU's media sockets; an
// unspecified IP among them stands for every address of this host (hostIPs).
// publicIPs are the addresses the SFU advertises for them.
func newPeerPolicy(media []net.Addr, publicIPs []netip.Addr, hostIPs []netip.Addr, allow []netip.Prefix) *peerPolicy {
	p := &peerPolicy{ownIPs: map[netip.Addr]bool{}, ownAddrs: map[netip.AddrPort]bool{}, allow: allow}
	var udpPorts []uint16
	for _, a := range media {
		ip, port, isUDP, ok := mediaAddr(a)
		if !ok {
			continue
		}
		ips := []netip.Addr{ip}
		if ip.IsUnspecified() {
			ips = hostIPs
		}
		for _, ip := range append(ips, publicIPs...) {
			p.ownIPs[ip.Unmap()] = true
		}
		if isUDP {
			udpPorts = append(udpPorts, port)
		}
	}
	for ip := range p.ownIPs {
		for _, port := range udpPorts {
			p.ownAddrs[netip.AddrPortFrom(ip, port)] = true
		}
	}
	return p
}

func mediaAddr(a net.Addr) (ip netip.Addr, port uint16, isUDP, ok bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		if a == nil {
			return ip, 0, false, false
		}
		ap, isUDP = a.AddrPort(), true
	case *net.TCPAddr:
		if a == nil {
			return ip, 0, false, false
		}
		ap = a.AddrPort()
	default:
		return ip, 0, false, false
	}
	ip = ap.Addr().Unmap()
	if !ip.IsValid() { // a nil IP: bound to every address
		ip = netip.IPv4Unspecified()
	}
	return ip, ap.Port(), isUDP, true
}

// permitIP decides a CreatePermission or ChannelBind for peer IP ip: TURN
// permissions are per IP, so an IP of our own passes here and the port is
// checked on every write (permitAddr). It returns the refusal reason, or
// "" when permitted.
func (p *peerPolicy) permitIP(ip netip.Addr) string {
	ip = ip.Unmap()
	if p.ownIPs[ip] {
		return ""
	}
	return p.allowed(ip)
}

// permitAddr decides one datagram to or from peer ap.
func (p *peerPolicy) permitAddr(ap netip.AddrPort) string {
	ip := ap.Addr().Unmap()
	if p.ownAddrs[netip.AddrPortFrom(ip, ap.Port())] {
		return ""
	}
	return p.allowed(ip)
}

// allowed reports whether an allow-listed range opens ip. A special
// address needs an entry inside its special range, so that a broad entry
// like 0.0.0.0/0 never opens loopback or private networks by accident.
func (p *peerPolicy) allowed(ip netip.Addr) string {
	sr, isSpecial := special(ip)
	for _, a := range p.allow {
		if !a.Contains(ip) {
			continue
		}
		if !isSpecial || (sr.prefix.Contains(a.Addr()) && a.Bits() >= sr.prefix.Bits()) {
			return ""
		}
	}
	if isSpecial {
		return sr.reason
	}
	return peerNotAllowed
}

// parsePrefixes parses MEDIA_TURN_ALLOW_PEERS. An IPv4-mapped IPv6 prefix
// becomes the IPv4 prefix it denotes, since peers are unmapped too.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("want CIDR ranges like 203.0.113.0/24, got %q", s)
		}
		p = p.Masked()
		if p.Addr().Is4In6() { // masked, so at least /96
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p)
	}
	return out, nil
}

// errPeerRefused is the error a relay socket returns for a datagram to a
// peer the policy refuses.
var errPeerRefused = errors.New("turn: peer refused by relay policy")

// addrIP returns the IP of a UDP or TCP address, unmapped.
func addrIP(a net.Addr) (netip.Addr, bool) {
	ap, ok := addrPort(a)
	return ap.Addr(), ok
}

// addrPort returns a UDP or TCP address as a netip.AddrPort, unmapped.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}
