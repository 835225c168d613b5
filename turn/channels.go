package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync"

	pionturn "github.com/pion/turn/v4"
)

// Relaying on a bound channel without Pion's per-datagram path.
//
// Pion reads every client datagram in the listener's loop and, for
// ChannelData, looks the allocation and channel up and writes the data to
// the relayed socket; it reads every relayed datagram in a goroutine of
// the allocation and writes it to the client as ChannelData when a channel
// is bound to its source (a Data indication otherwise). Both cost an
// allocation and a few formatted debug arguments per datagram, and a
// datagram from the SFU in memory also costs waking that goroutine.
//
// For UDP clients this package does the ChannelData cases itself, on the
// goroutine that has the datagram: the listener's read loop for the
// client's (udpListener.relayChannelData), the SFU's for the SFU's
// (relayHandoff.Send), the allocation's reader for a relayed socket's
// (relayConn.ReadFrom), or the relay loop, which reads the relayed
// sockets of UDP clients on Linux (relayConn.fromLoop). It knows Pion's channels from Pion's own
// OnChannelCreated and OnChannelDeleted events, so it relays on exactly
// the channels Pion would, and through the same relayConn checks and
// counts. Whatever it does not recognise (no channel, a Data indication,
// a TCP or TLS client) takes Pion's path as before.

// channelHeader is a ChannelData message's header: number and length.
const channelHeader = 4

// isChannelNumber reports whether n is in ChannelData's range, 0x4000 to
// 0x7FFF (RFC 8656, section 12).
func isChannelNumber(n uint16) bool { return n >= 0x4000 && n <= 0x7FFF }

// parseChannelData returns the channel number and data of a ChannelData
// message, accepting exactly what Pion's decoder accepts: a valid number
// and a length within the datagram (padding and anything after the data
// ignored).
func parseChannelData(b []byte) (number uint16, data []byte, ok bool) {
	if len(b) < channelHeader {
		return 0, nil, false
	}
	number, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
	if !isChannelNumber(number) || n > len(b)-channelHeader {
		return 0, nil, false
	}
	return number, b[channelHeader : channelHeader+n], true
}

// putChannelData writes a ChannelData message of data on channel number
// into dst, padded to a multiple of 4 bytes with zeros as Pion pads it,
// and returns its length; dst must hold channelDataLen(len(data)).
func putChannelData(dst []byte, number uint16, data []byte) int {
	binary.BigEndian.PutUint16(dst, number)
	binary.BigEndian.PutUint16(dst[2:], uint16(len(data)))
	n := channelHeader + copy(dst[channelHeader:], data)
	padded := channelDataLen(len(data))
	clear(dst[n:padded])
	return padded
}

// channelDataLen is the padded length of a ChannelData message of n bytes.
func channelDataLen(n int) int { return (channelHeader + n + 3) &^ 3 }

// channel is one of Pion's channel bindings of an allocation.
type channel struct {
	number   uint16
	peer     netip.AddrPort // unmapped
	peerAddr net.Addr       // Pion's, handed to relayConn.WriteTo as Pion would
}

// channelSet is an allocation's channels as they stand: immutable, read
// without a lock, replaced on every change.
type channelSet struct {
	client netip.AddrPort // the allocation's client, on the UDP listener
	list   []channel
}

func (cs *channelSet) byNumber(number uint16) (channel, bool) {
	for _, c := range cs.list {
		if c.number == number {
			return c, true
		}
	}
	return channel{}, false
}

func (cs *channelSet) byPeer(peer netip.AddrPort) (channel, bool) {
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	for _, c := range cs.list {
		if c.peer == peer {
			return c, true
		}
	}
	return channel{}, false
}

// bindChannel records a channel Pion has bound on c, unless c is closed,
// and indexes c by its client so that the listener finds it.
func (c *relayConn) bindChannel(client netip.AddrPort, ch channel) {
	c.chanMu.Lock()
	defer c.chanMu.Unlock()
	if c.chanClosed {
		return
	}
	next := &channelSet{client: client}
	if cur := c.chans.Load(); cur != nil {
		next.list = slices.DeleteFunc(slices.Clone(cur.list), func(o channel) bool { return o.number == ch.number })
	}
	next.list = append(next.list, ch)
	c.chans.Store(next)
	c.s.channels.set(client, c)
}

// unbindChannel forgets a channel Pion has removed from c.
func (c *relayConn) unbindChannel(number uint16) {
	c.chanMu.Lock()
	defer c.chanMu.Unlock()
	cur := c.chans.Load()
	if cur == nil {
		return
	}
	next := &channelSet{client: cur.client}
	next.list = slices.DeleteFunc(slices.Clone(cur.list), func(o channel) bool { return o.number == number })
	c.chans.Store(next)
}

// closeChannels forgets every channel of c, which is closing, for good.
func (c *relayConn) closeChannels() {
	c.chanMu.Lock()
	defer c.chanMu.Unlock()
	c.chanClosed = true
	if cur := c.chans.Swap(nil); cur != nil {
		c.s.channels.remove(cur.client, c)
	}
}

// channelIndex finds the relayConn of a UDP client that has channels,
// by the client's address: the listener's loop asks it for every
// ChannelData datagram. It changes only when a client binds its first
// channel or its allocation closes.
type channelIndex struct {
	mu       sync.RWMutex // guards byClient
	byClient map[netip.AddrPort]*relayConn
}

func (x *channelIndex) get(client netip.AddrPort) *relayConn {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byClient[client]
}

func (x *channelIndex) set(client netip.AddrPort, c *relayConn) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.byClient == nil {
		x.byClient = map[netip.AddrPort]*relayConn{}
	}
	x.byClient[client] = c
}

// remove forgets client's entry if it is still c: a newer allocation of
// the same client address keeps its own.
func (x *channelIndex) remove(client netip.AddrPort, c *relayConn) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.byClient[client] == c {
		delete(x.byClient, client)
	}
}

// channelEvents mirror Pion's channel bindings of UDP clients' allocations
// (see the top of this file); they are added to the UDP server's events.
func (s *Server) channelEvents(h *pionturn.EventHandler) {
	h.OnChannelCreated = func(src, _ net.Addr, _, _, _ string, relay, peer net.Addr, number uint16) {
		client, ok1 := addrPort(src)
		peerAP, ok2 := addrPort(peer)
		relayAP, ok3 := addrPort(relay)
		if !ok1 || !ok2 || !ok3 {
			return
		}
		if c := s.relayAt(relayAP); c != nil {
			c.bindChannel(client, channel{number: number, peer: peerAP, peerAddr: peer})
		}
	}
	h.OnChannelDeleted = func(_, _ net.Addr, _, _, _ string, relay, _ net.Addr, number uint16) {
		if relayAP, ok := addrPort(relay); ok {
			if c := s.relayAt(relayAP); c != nil {
				c.unbindChannel(number)
			}
		}
	}
}

// channelTo returns the channel c's client has bound to peer from, and
// the client, if there is one.
func (c *relayConn) channelTo(from netip.AddrPort) (channel, netip.AddrPort, bool) {
	cs := c.chans.Load()
	if cs == nil {
		return channel{}, netip.AddrPort{}, false
	}
	ch, ok := cs.byPeer(from)
	return ch, cs.client, ok
}

// relayAt returns the open relayConn whose relayed address is relay.
func (s *Server) relayAt(relay netip.AddrPort) *relayConn {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	return s.byRelay[relay]
}
