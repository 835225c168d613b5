package turn

import (
	"net"
	"net/netip"
	"slices"
)

// shortcut delivers the relay's datagrams for the SFU's public address to
// the SFU's local socket, and presents the SFU's replies as coming from the
// public address. Behind a 1:1 NAT or Fly's UDP proxy the public address
// (MEDIA_PUBLIC_IP, the only one the SFU advertises) is not on this host:
// a datagram the relay sends there goes out and must be looped back by the
// NAT (hairpinning), which many NATs do not do and which at best costs a
// trip to the edge. The SFU answers the relay's address whichever way the
// datagram came, so only the reply's source needs restoring, for the
// client's TURN permission and ICE check to match.
//
// It applies only when there is exactly one public IPv4 address that is
// not this host's own (relayed sockets are IPv4; with two, a reply's
// public source would be ambiguous). It is immutable after newShortcut.
type shortcut struct {
	toLocal  map[netip.AddrPort]netip.AddrPort // public media address to local socket
	toPublic map[netip.AddrPort]netip.AddrPort // the reverse
	// The same as net.Addr values made once, so that relaying through the
	// shortcut allocates nothing per datagram; Pion and the socket only
	// read them.
	localAddrs, publicAddrs map[netip.AddrPort]*net.UDPAddr
}

// newShortcut maps each UDP media socket's public address to where the
// SFU really listens: its bound IP, or relayIP when it listens on every
// address (the relay's own IP is then one of them).
func newShortcut(media []net.Addr, publicIPs, hostIPs []netip.Addr, relayIP netip.Addr) shortcut {
	sc := shortcut{
		toLocal: map[netip.AddrPort]netip.AddrPort{}, toPublic: map[netip.AddrPort]netip.AddrPort{},
		localAddrs: map[netip.AddrPort]*net.UDPAddr{}, publicAddrs: map[netip.AddrPort]*net.UDPAddr{},
	}
	var remote []netip.Addr
	for _, ip := range publicIPs {
		if ip.Is4() && !slices.Contains(hostIPs, ip) {
			remote = append(remote, ip)
		}
	}
	if len(remote) != 1 {
		return sc
	}
	for _, a := range media {
		ip, port, isUDP, ok := mediaAddr(a)
		if !ok || !isUDP {
			continue
		}
		if ip.IsUnspecified() {
			ip = relayIP
		}
		if !ip.Is4() || ip == remote[0] {
			continue
		}
		public, local := netip.AddrPortFrom(remote[0], port), netip.AddrPortFrom(ip, port)
		sc.toLocal[public] = local
		sc.toPublic[local] = public
		sc.localAddrs[public] = net.UDPAddrFromAddrPort(local)
		sc.publicAddrs[local] = net.UDPAddrFromAddrPort(public)
	}
	return sc
}

// local returns where a datagram for ap really goes.
func (sc shortcut) local(ap netip.AddrPort, addr net.Addr) net.Addr {
	if l, ok := sc.localAddrs[ap]; ok {
		return l
	}
	return addr
}

// localAddrPort returns where a datagram for ap really goes.
func (sc shortcut) localAddrPort(ap netip.AddrPort) netip.AddrPort {
	if l, ok := sc.toLocal[ap]; ok {
		return l
	}
	return ap
}

// public returns the address a datagram from ap is presented as coming from.
func (sc shortcut) public(ap netip.AddrPort, addr net.Addr) net.Addr {
	if p, ok := sc.publicAddrs[ap]; ok {
		return p
	}
	return addr
}

// publicAddrPort returns the address a datagram from ap is presented as
// coming from.
func (sc shortcut) publicAddrPort(ap netip.AddrPort) netip.AddrPort {
	if p, ok := sc.toPublic[ap]; ok {
		return p
	}
	return ap
}
