package netlab

import (
	"net"
	"net/netip"

	"github.com/pion/transport/v5"
)

// Divert wraps n so that the UDP sockets it opens reach the Relay's target
// only through the Relay, and nothing else: a datagram sent to the target
// goes to the Relay instead, one from the Relay reads as from the target,
// and one from anywhere else is dropped, as a NAT in front of the client
// would. Give it to one in-process Pion client (SettingEngine.SetNet with
// stdnet.NewNet wrapped) to impair, blackhole or rebind that client alone
// while the others reach the server directly:
//
//	n, _ := stdnet.NewNet()
//	api, _ := client.NewAPI(func(se *webrtc.SettingEngine) {
//		client.LoopbackOnly(se)
//		se.SetNet(relay.Divert(n))
//	})
//
// The target is the server's ICE mux (one UDP port for every session), so
// the client's media and ICE checks all pass the Relay.
func (r *Relay) Divert(n transport.Net) transport.Net {
	return divertNet{Net: n, relay: r.Addr(), target: r.target, targetAddr: net.UDPAddrFromAddrPort(r.target),
		relayAddr: net.UDPAddrFromAddrPort(r.Addr())}
}

// divertNet is a transport.Net whose UDP sockets are diverted. The
// addresses are computed once, so a diverted datagram allocates nothing.
type divertNet struct {
	transport.Net
	relay, target         netip.AddrPort
	relayAddr, targetAddr *net.UDPAddr
}

func (d divertNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := d.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &divertConn{UDPConn: c, d: d}, nil
}

// ListenPacket opens a diverted UDP socket too, so no socket of the
// client escapes the Relay.
func (d divertNet) ListenPacket(network, address string) (net.PacketConn, error) {
	laddr, err := d.Net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, err
	}
	return d.ListenUDP(network, laddr)
}

// divertConn is one diverted socket.
type divertConn struct {
	transport.UDPConn
	d divertNet
}

func (c *divertConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if u, ok := addr.(*net.UDPAddr); ok {
		return c.WriteToUDP(b, u)
	}
	return c.UDPConn.WriteTo(b, addr)
}

func (c *divertConn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	if addrPort(addr) == c.d.target {
		addr = c.d.relayAddr
	}
	return c.UDPConn.WriteToUDP(b, addr)
}

func (c *divertConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	if addr != nil && addrPort(addr) == c.d.target {
		addr = c.d.relayAddr
	}
	return c.UDPConn.WriteMsgUDP(b, oob, addr)
}

func (c *divertConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.ReadFromUDP(b)
	if addr == nil {
		return n, nil, err // a nil *net.UDPAddr must not become a non-nil net.Addr
	}
	return n, addr, err
}

// ReadFromUDP returns the next datagram from the Relay, as from the
// target, dropping any other.
func (c *divertConn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFromUDP(b)
		if err != nil || addrPort(addr) == c.d.relay {
			if err == nil {
				addr = c.d.targetAddr
			}
			return n, addr, err
		}
	}
}

func (c *divertConn) ReadMsgUDP(b, oob []byte) (int, int, int, *net.UDPAddr, error) {
	for {
		n, oobn, flags, addr, err := c.UDPConn.ReadMsgUDP(b, oob)
		if err != nil || addrPort(addr) == c.d.relay {
			if err == nil {
				addr = c.d.targetAddr
			}
			return n, oobn, flags, addr, err
		}
	}
}

// addrPort is a's address and port with an IPv4 address in its 4-byte
// form, to compare with the Relay's.
func addrPort(a *net.UDPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
