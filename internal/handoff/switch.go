package handoff

import (
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
)

// MediaQueue is how many datagrams the media socket's Conn queues from
// the relay: as many as 50 relayed publishers' video bursts of 10 packets,
// and far less memory (at most 800 KB, taken as used) than the 8 MiB
// socket buffer the SFU asks the kernel for.
const MediaQueue = 512

// RelayQueue is how many datagrams one relayed socket's Conn queues from
// the SFU: a keyframe burst of one subscriber (about 60 packets) with
// room to spare. Slots are allocated as used, so an idle allocation
// costs nothing.
const RelayQueue = 128

// Switch connects the SFU's media socket with the relayed sockets of the
// allocations whose peer it is. The SFU owns the media Conn and asks
// Route on every write; the relay Attaches a relayed socket when its
// client first sends to the media socket and Detaches it on close.
//
// Routes are read on every datagram the SFU sends and change only when an
// allocation starts or stops talking to the SFU, so they are a map that
// is copied on change and read without a lock.
type Switch struct {
	media *Conn

	mu      sync.Mutex // serializes changes of routes
	routes  atomic.Pointer[map[netip.AddrPort]Route]
	batch   atomic.Pointer[Batch] // where Senders' datagrams wait during a fan-out; nil: none
	dropped atomic.Int64          // datagrams Send routed but a full queue refused
}

// Route is where the SFU's datagrams to one relayed address go: to
// Sender, on the SFU's goroutine, when it takes them; otherwise into the
// allocation's Conn, as if from Peer, the media address the allocation's
// client named (the one its permission is for).
type Route struct {
	Conn   *Conn
	Peer   netip.AddrPort
	Sender Sender // nil: every datagram goes into Conn
}

// Sender relays the SFU's datagrams for one relayed address on the SFU's
// own goroutine, doing at once what the allocation's reader would do with
// them after reading them from its Conn: no queue, no goroutine woken per
// datagram. Send reports false for a datagram it leaves to that reader
// (one it cannot relay the fast way, such as a Data indication), which
// then gets it through the Conn; true once p is relayed or dropped as the
// reader would have dropped it. It must not keep p.
type Sender interface {
	Send(p []byte, from netip.AddrPort) bool
}

// Lender is a Sender that can lend the buffer the SFU's datagram will
// leave from, so that the SFU writes it there (encrypts it in place)
// instead of handing over a copy to Send. Lend returns a buffer for a
// datagram from the address from, of at least MaxPacket bytes, or nil
// when the datagram would not leave the fast way now (the caller then
// uses Send). After a buffer, exactly one of Commit (its first n bytes
// are the datagram) or Cancel follows, and the caller makes no other call
// on the Lender, or on its Batch, between them.
type Lender interface {
	Sender
	Lend(from netip.AddrPort) []byte
	Commit(n int)
	Cancel()
}

// Batch lets Senders' datagrams wait while the SFU fans a packet out and
// leave together when it ends, as the SFU's own copies do: Hold starts a
// fan-out, Release ends one and sends what waits.
type Batch interface {
	Hold()
	Release()
}

// SetBatch makes b the batch Hold and Release act on. The relay sets it
// once, before it serves.
func (s *Switch) SetBatch(b Batch) { s.batch.Store(&b) }

// Hold tells the batch, if any, that a fan-out starts; every Hold must be
// Released.
func (s *Switch) Hold() {
	if b := s.batch.Load(); b != nil {
		(*b).Hold()
	}
}

// Release tells the batch, if any, that a fan-out has ended.
func (s *Switch) Release() {
	if b := s.batch.Load(); b != nil {
		(*b).Release()
	}
}

// NewSwitch connects relayed sockets to media, the SFU's socket.
func NewSwitch(media *Conn) *Switch {
	s := &Switch{media: media}
	s.routes.Store(&map[netip.AddrPort]Route{})
	return s
}

// Media is the SFU's socket, to Deliver the relay's datagrams to.
func (s *Switch) Media() *Conn { return s.media }

// Route returns where a datagram for relayed address addr goes, if one
// of the relay's allocations holds it.
func (s *Switch) Route(addr netip.AddrPort) (Route, bool) {
	routes := *s.routes.Load()
	if len(routes) == 0 {
		return Route{}, false
	}
	r, ok := routes[netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())]
	return r, ok
}

// Send hands p, the SFU's datagram for addr, to the allocation holding
// addr, and reports whether one does: if not, p is for the kernel. The
// route's Sender takes it if it can; otherwise it is queued for the
// allocation's reader, and a datagram that queue cannot take is dropped
// and counted, as a full socket buffer would drop it.
func (s *Switch) Send(p []byte, addr netip.AddrPort) bool {
	r, ok := s.Route(addr)
	if !ok || (r.Sender != nil && r.Sender.Send(p, r.Peer)) {
		return ok
	}
	if !r.Conn.Deliver(p, r.Peer) {
		s.dropped.Add(1)
	}
	return true
}

// Dropped is how many datagrams for relayed addresses Send has dropped.
func (s *Switch) Dropped() int64 { return s.dropped.Load() }

// Attach routes the SFU's datagrams for relayed address relay to r.
func (s *Switch) Attach(relay netip.AddrPort, r Route) {
	s.update(func(m map[netip.AddrPort]Route) { m[relay] = r })
}

// Detach removes relay's route if it still leads to c: a port reused by a
// newer allocation keeps the newer route.
func (s *Switch) Detach(relay netip.AddrPort, c *Conn) {
	if r, ok := s.Route(relay); !ok || r.Conn != c {
		return
	}
	s.update(func(m map[netip.AddrPort]Route) {
		if m[relay].Conn == c {
			delete(m, relay)
		}
	})
}

func (s *Switch) update(change func(map[netip.AddrPort]Route)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := maps.Clone(*s.routes.Load())
	change(m)
	s.routes.Store(&m)
}
