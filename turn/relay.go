package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/media-service/media-service/internal/handoff"
)

// relayPortTries is how many random ports of the configured range an
// allocation tries before it fails with 508 (Insufficient Capacity).
const relayPortTries = 16

var (
	errDraining   = errors.New("turn: draining: no new allocations")
	errTCPRelay   = errors.New("turn: TCP relays (RFC 6062) are not offered")
	errNoRelayUDP = errors.New("turn: relays are UDP only")
)

// relayGenerator is Pion's RelayAddressGenerator for one transport. It
// refuses while the instance drains, binds each relayed socket on the
// relay address (in the port range, if any), and hands Pion a relayConn
// that enforces the peer policy on every datagram.
type relayGenerator struct {
	s         *Server
	transport string
}

// Validate is called by Pion at start; the configuration is validated by New.
func (g *relayGenerator) Validate() error { return nil }

// AllocatePacketConn binds a relayed UDP socket for a new allocation.
func (g *relayGenerator) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	s := g.s
	if s.draining.Load() {
		s.metrics.allocationRefused(g.transport, refusedDraining)
		return nil, nil, errDraining
	}
	if network != "udp4" && network != "udp" {
		return nil, nil, errNoRelayUDP
	}
	pc, err := g.listen(requestedPort)
	if err != nil {
		return nil, nil, fmt.Errorf("turn: bind relay on %s: %w", s.relayBind, err)
	}
	relayAddr := &net.UDPAddr{IP: s.relayIP, Port: pc.LocalAddr().(*net.UDPAddr).Port}
	var rc *relayConn
	if uc, ok := pc.(*net.UDPConn); ok {
		rc = s.newRelayConn(uc, g.transport, relayAddr.AddrPort())
	} else {
		rc = s.newLoopedRelayConn(pc, g.transport, relayAddr.AddrPort())
	}
	if !s.track(rc) { // closed meanwhile
		pc.Close()
		return nil, nil, errDraining
	}
	if err := s.loop.adopt(rc); err != nil {
		rc.Close()
		return nil, nil, fmt.Errorf("turn: relay loop: %w", err)
	}
	if rc.handoff != nil {
		rc.handoff.route(s.mediaPeer)
	}
	return rc, relayAddr, nil
}

// AllocateConn is for TCP relays, which are not offered: the relay's only
// legitimate peer, the SFU, speaks UDP.
func (g *relayGenerator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errTCPRelay
}

func (g *relayGenerator) listen(port int) (net.PacketConn, error) {
	cfg := g.s.cfg
	if port != 0 || cfg.RelayPortMin == 0 {
		return g.bind(port)
	}
	var err error
	for range relayPortTries {
		var pc net.PacketConn
		if pc, err = g.bind(cfg.RelayPortMin + rand.IntN(cfg.RelayPortMax-cfg.RelayPortMin+1)); err == nil {
			return pc, nil
		}
	}
	return nil, fmt.Errorf("no free port in %d-%d after %d tries: %w", cfg.RelayPortMin, cfg.RelayPortMax, relayPortTries, err)
}

// newLoopedRelayConn wraps pc, a relayed socket of the relay loop whose
// address clients see as relay: Pion's reader reads what the loop feeds
// its inbox, and, with a handoff, what the SFU delivers there too.
func (s *Server) newLoopedRelayConn(pc net.PacketConn, transport string, relay netip.AddrPort) *relayConn {
	rc := &relayConn{PacketConn: pc, s: s, transport: transport, relay: relay, bytes: s.metrics.bytes[transport]}
	rc.inbox = handoff.NewFedConn(handoff.RelayQueue)
	if s.handoff != nil {
		rc.handoff = &relayHandoff{conn: rc.inbox, sw: s.handoff, rc: rc, relay: relay, bytes: rc.bytes}
	}
	return rc
}

// bind binds a relayed socket on port of the relay bind address: one the
// relay loop reads, for a UDP client when there is a loop.
func (g *relayGenerator) bind(port int) (net.PacketConn, error) {
	if g.s.loop != nil && g.transport == transportUDP {
		return g.s.loop.listen(g.s.relayBind, port)
	}
	return net.ListenPacket("udp4", net.JoinHostPort(g.s.relayBind, strconv.Itoa(port)))
}

// relayConn is one allocation's relayed socket. The permission handler
// already refuses peers by IP; relayConn checks every datagram by IP and
// port again (defence in depth: a bug or a Pion path that skips the
// permission check still cannot reach a refused address), drops datagrams
// from refused peers, and counts what is relayed. Datagrams between the
// client and the SFU's own UDP socket are handed over in memory when the
// relay has a handoff (handoff.go); the checks and counts are the same.
type relayConn struct {
	net.PacketConn
	s         *Server
	transport string
	relay     netip.AddrPort // the relayed address clients see, unmapped
	bytes     *byteCounts
	handoff   *relayHandoff // nil without Options.Handoff

	// chans are Pion's channels of this allocation, for a UDP client
	// (channels.go); nil until the first is bound. chanMu serializes their
	// changes with closing, after which chanClosed keeps them nil.
	chanMu     sync.Mutex
	chans      atomic.Pointer[channelSet]
	chanClosed bool

	// inbox, for a socket in the relay loop (relayloop_linux.go), is
	// where the loop leaves the datagrams it does not relay on a channel,
	// for Pion's reader, and, with a handoff, the SFU's too (it is then
	// handoff.conn); nil: that reader reads the socket itself.
	inbox *handoff.Conn

	lastFrom netip.AddrPort // the source of the last datagram from the kernel
	lastAddr *net.UDPAddr   // lastFrom as a net.Addr; both owned by the read loop

	closeOnce sync.Once
}

// WriteTo sends a client's datagram to a peer, if the policy permits it.
func (c *relayConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ap, ok := addrPort(addr)
	if reason := c.refusal(ap, ok); reason != "" {
		c.s.metrics.peerRefused(c.transport, reason, stageWrite)
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errPeerRefused}
	}
	if c.handoff != nil && c.s.toMedia[c.s.shortcut.localAddrPort(ap)] {
		return c.handoff.send(b, ap), nil
	}
	n, err := c.PacketConn.WriteTo(b, c.s.shortcut.local(ap, addr))
	c.bytes.toPeer.Add(int64(n))
	c.bytes.kernelTo.Add(1)
	return n, err
}

// ReadFrom returns the next datagram from a permitted peer for Pion's
// reader to relay to the client, and relays itself those on a channel
// the client has bound to their source (channels.go).
func (c *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, ap, addr, handed, err := c.read(b)
		if err != nil {
			return n, addr, err
		}
		if !c.admit(ap, addr != nil, n, handed) {
			continue
		}
		if !handed {
			ap, addr = c.s.shortcut.publicAddrPort(ap), c.s.shortcut.public(ap, addr)
		}
		if ch, client, ok := c.channelTo(ap); ok {
			c.s.ln.udp.out.writeChannelData(ch.number, b[:n], client)
			continue
		}
		return n, addr, nil
	}
}

// fromLoop relays p, a datagram the relay loop read from the kernel, on
// the channel the client has bound to its source, with ReadFrom's checks
// and counts, or leaves it in the inbox, where ReadFrom reads it as from
// the kernel.
func (c *relayConn) fromLoop(p []byte, from netip.AddrPort) {
	ch, client, ok := c.channelTo(c.s.shortcut.publicAddrPort(from))
	if !ok {
		c.inbox.Feed(p, from) // a full inbox drops it, as a full socket buffer would
		return
	}
	if c.admit(from, true, len(p), false) {
		c.s.ln.udp.out.writeChannelData(ch.number, p, client)
	}
}

// admit checks a datagram of n bytes from peer ap (ok false: not a UDP or
// TCP address) against the policy, and counts it, or the refusal.
func (c *relayConn) admit(ap netip.AddrPort, ok bool, n int, handed bool) bool {
	if reason := c.refusal(ap, ok); reason != "" {
		c.s.metrics.peerRefused(c.transport, reason, stageRead)
		return false
	}
	c.bytes.fromPeer.Add(int64(n))
	if handed {
		c.bytes.handedFrom.Add(1)
	} else {
		c.bytes.kernelFrom.Add(1)
	}
	return true
}

// read returns the next datagram from the kernel or, handed is true,
// from the SFU in memory; addr is nil for an address that is not UDP or
// TCP (refused).
func (c *relayConn) read(b []byte) (n int, ap netip.AddrPort, addr net.Addr, handed bool, err error) {
	if c.handoff != nil {
		n, ap, handed, err = c.handoff.conn.Read(b)
		switch {
		case err != nil:
			return n, ap, nil, false, err
		case handed:
			return n, ap, c.handoff.addr(ap), true, nil
		}
		return n, ap, c.kernelAddr(ap), false, nil
	}
	if c.inbox != nil {
		if n, ap, _, err = c.inbox.Read(b); err != nil {
			return 0, ap, nil, false, err
		}
		return n, ap, c.kernelAddr(ap), false, nil
	}
	if uc, ok := c.PacketConn.(*net.UDPConn); ok {
		n, ap, err = uc.ReadFromUDPAddrPort(b)
		return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), c.kernelAddr(ap), false, err
	}
	n, addr, err = c.PacketConn.ReadFrom(b)
	ap, ok := addrPort(addr)
	if !ok {
		addr = nil
	}
	return n, ap, addr, false, err
}

// kernelAddr is ap as a net.Addr, made once for a run of datagrams from
// the same peer (Pion only reads it), so that a read allocates nothing.
// Only the allocation's read loop calls it.
func (c *relayConn) kernelAddr(ap netip.AddrPort) net.Addr {
	if !ap.IsValid() {
		return nil
	}
	if ap != c.lastFrom || c.lastAddr == nil {
		c.lastFrom, c.lastAddr = ap, net.UDPAddrFromAddrPort(ap)
	}
	return c.lastAddr
}

func (c *relayConn) refusal(ap netip.AddrPort, ok bool) string {
	if !ok {
		return peerNotAllowed
	}
	return c.s.policy.permitAddr(ap)
}

// Close closes the socket and forgets it.
func (c *relayConn) Close() error {
	err := c.PacketConn.Close()
	c.closeOnce.Do(func() {
		c.closeChannels()
		if c.handoff != nil {
			c.handoff.detach()
		}
		c.s.untrack(c)
	})
	return err
}

// permissionHandler is Pion's PermissionHandler for one transport.
func (s *Server) permissionHandler(transport string) func(net.Addr, net.IP) bool {
	return func(_ net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		reason := peerNotAllowed
		if ok {
			reason = s.policy.permitIP(ip)
		}
		if reason != "" {
			s.metrics.peerRefused(transport, reason, stagePermission)
			s.log.Debug("turn_peer_refused", "transport", transport, "reason", reason, "stage", stagePermission)
			return false
		}
		return true
	}
}
