package turn

import (
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/media-service/media-service/internal/handoff"
)

// mediaDestinations are the addresses at which the kernel would deliver a
// relayed datagram to the SFU's socket, the handoff's media Conn: its
// bound address, or, bound to every address, this host's addresses and
// the relay's own IP on its port. A datagram for any of them (after the
// shortcut's mapping of the public address) is handed over instead.
func mediaDestinations(sw *handoff.Switch, hostIPs []netip.Addr, relayIP netip.Addr) map[netip.AddrPort]bool {
	dst := map[netip.AddrPort]bool{}
	if sw == nil {
		return dst
	}
	local := sw.Media().LocalAddr().(*net.UDPAddr).AddrPort()
	ip, port := local.Addr().Unmap(), local.Port()
	ips := []netip.Addr{ip}
	if ip.IsUnspecified() {
		ips = append(slices.Clone(hostIPs), relayIP)
	}
	for _, ip := range ips {
		dst[netip.AddrPortFrom(ip.Unmap(), port)] = true
	}
	return dst
}

// mediaPeer is the address the SFU's datagrams to a relayed socket come
// from through the kernel, before the client has named one (the SFU sends
// its connectivity checks as soon as it learns the relayed candidate): the
// media socket's address, the relay's IP for a socket bound to every
// address, shown as the public address when the shortcut applies.
func mediaPeer(sw *handoff.Switch, sc shortcut, relayIP netip.Addr) netip.AddrPort {
	if sw == nil {
		return netip.AddrPort{}
	}
	local := sw.Media().LocalAddr().(*net.UDPAddr).AddrPort()
	ip := local.Addr().Unmap()
	if ip.IsUnspecified() {
		ip = relayIP
	}
	ap := netip.AddrPortFrom(ip, local.Port())
	if p, ok := sc.toPublic[ap]; ok {
		return p
	}
	return ap
}

// newRelayConn wraps pc, an allocation's relayed socket whose address
// clients see as relay. With a handoff, it is read through a handoff.Conn
// so that the SFU's datagrams arrive in memory too.
func (s *Server) newRelayConn(pc *net.UDPConn, transport string, relay netip.AddrPort) *relayConn {
	relay = netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())
	rc := &relayConn{PacketConn: pc, s: s, transport: transport, relay: relay, bytes: s.metrics.bytes[transport]}
	if s.handoff != nil {
		hc := handoff.NewConn(pc, handoff.RelayQueue)
		rc.PacketConn = hc
		rc.handoff = &relayHandoff{conn: hc, sw: s.handoff, rc: rc, relay: relay, bytes: rc.bytes}
	}
	return rc
}

// relayHandoff is the in-memory path of one relayed socket to and from
// the SFU's media socket. The SFU sees the client's datagrams as coming
// from the relayed address, as through the kernel; the client sees the
// SFU's as coming from the media address it last sent to (the server's
// mediaPeer before it sent any). It is the route's handoff.Sender: the
// SFU's datagrams on a bound channel go to the client from the SFU's
// goroutine (channels.go); only the others take the relayed socket's
// queue to Pion's reader.
type relayHandoff struct {
	conn  *handoff.Conn // the relayed socket
	sw    *handoff.Switch
	rc    *relayConn
	relay netip.AddrPort // the allocation's relayed address
	bytes *byteCounts

	mu       sync.Mutex     // guards peer and peerAddr
	peer     netip.AddrPort // the media address the client last sent to
	peerAddr *net.UDPAddr   // peer, made once so that reads do not allocate
}

// send hands b to the SFU as if from the relayed address. A datagram the
// SFU's queue cannot take is dropped and counted, as a full socket buffer
// would drop it after the send succeeded.
func (h *relayHandoff) send(b []byte, peer netip.AddrPort) int {
	h.route(peer)
	// Counted before the SFU can have it: its reply may reach the client,
	// and the client read the counts, before Deliver returns.
	h.bytes.toPeer.Add(int64(len(b)))
	h.bytes.handedTo.Add(1)
	if !h.sw.Media().Deliver(b, h.relay) {
		h.bytes.handoffDropped.Add(1)
	}
	return len(b)
}

// Send relays p, the SFU's datagram, to the client as ChannelData when
// the client has bound a channel to from, with the checks and counts of
// relayConn.ReadFrom; it reports false, having done nothing, otherwise.
func (h *relayHandoff) Send(p []byte, from netip.AddrPort) bool {
	if len(p) > handoff.MaxPacket { // the queue drops it, as before
		return false
	}
	ch, client, ok := h.rc.channelTo(from)
	if !ok {
		return false
	}
	if reason := h.rc.refusal(from, true); reason != "" {
		h.rc.s.metrics.peerRefused(h.rc.transport, reason, stageRead)
		return true
	}
	h.bytes.fromPeer.Add(int64(len(p)))
	h.bytes.handedFrom.Add(1)
	h.rc.s.ln.udp.out.writeChannelData(ch.number, p, client)
	return true
}

// Lend is handoff.Lender's: a buffer in the listener's batch for a
// datagram from from, when Send would relay it on a bound channel and
// the batch holds it for the SFU's fan-out. The listener's lock is held
// until Commit or Cancel.
func (h *relayHandoff) Lend(from netip.AddrPort) []byte {
	ch, client, ok := h.rc.channelTo(from)
	if !ok || h.rc.refusal(from, true) != "" {
		return nil // Send does what it would have done
	}
	return h.rc.s.ln.udp.out.lend(ch.number, client)
}

// Commit sends the lent buffer's first n bytes as Send would have, and
// counts them.
func (h *relayHandoff) Commit(n int) {
	h.rc.s.ln.udp.out.commitLent(n)
	h.bytes.fromPeer.Add(int64(n))
	h.bytes.handedFrom.Add(1)
}

// Cancel gives the lent buffer back.
func (h *relayHandoff) Cancel() { h.rc.s.ln.udp.out.cancelLent() }

// route makes the SFU's datagrams for the relayed address come back here
// as from peer.
func (h *relayHandoff) route(peer netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if peer == h.peer {
		return
	}
	h.peer, h.peerAddr = peer, net.UDPAddrFromAddrPort(peer)
	h.sw.Attach(h.relay, handoff.Route{Conn: h.conn, Peer: peer, Sender: h})
}

// addr is from as a net.Addr, the cached one when it is the peer. Pion
// only reads it.
func (h *relayHandoff) addr(from netip.AddrPort) net.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if from == h.peer {
		return h.peerAddr
	}
	return net.UDPAddrFromAddrPort(from)
}

// detach stops routing the SFU's datagrams here.
func (h *relayHandoff) detach() { h.sw.Detach(h.relay, h.conn) }
