// Package handoff moves datagrams in memory between the embedded TURN
// relay's relayed sockets and the SFU's media socket of one instance.
//
// A relayed participant's media would otherwise cross the kernel twice
// on the instance: client → TURN socket → relayed socket → kernel → media
// socket, and back the same way. With a Switch, a datagram the relay
// writes to the media socket's address is queued straight into the media
// socket's Conn, whose reader sees it as coming from the allocation's
// relayed address; and a datagram the SFU writes to a relayed address is
// queued into that allocation's Conn, whose reader (Pion's allocation)
// sees it as coming from the media address, exactly as the kernel would
// have delivered both. Every check the relay makes on a datagram it reads
// or writes still runs: only the kernel trip is skipped. A route's Sender
// may take the SFU's datagram at once, on the SFU's goroutine, instead of
// queueing it (Switch.Send): the relay does so on a bound channel.
package handoff

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/media-service/media-service/internal/mmsg"
)

// MaxPacket is the largest datagram a Conn queues; a larger one is
// dropped, as a kernel would drop one above the path MTU. It covers
// Pion's 1600-byte relay buffer and the SFU's 1500-byte packets.
const MaxPacket = 1600

// longAgo is a read deadline in the past: setting it wakes a blocked read.
var longAgo = time.Unix(1, 0)

// Conn is a UDP socket whose reads return the kernel's datagrams merged
// with the ones handed over by Deliver. The reader waits in Go's
// netpoller as usual; a delivery while it does wakes it through a read
// deadline in the past (no goroutine, no system call), after which it
// takes the queued datagrams first. On Linux the socket is read with a
// raw recvfrom (internal/mmsg), which does not wake the runtime's sysmon
// thread as a read through syscall.Syscall does when the process was
// idle: at an instance's rates most datagrams find it so.
//
// One goroutine reads (ReadFromAddrPort, ReadFrom or Read); any goroutine
// delivers. Read deadlines are the Conn's own: a caller's SetReadDeadline
// would be undone by the next wake-up.
//
// A fed Conn (NewFedConn) has no socket to read: another goroutine reads
// the kernel's datagrams and hands them in with Feed, and its reader
// waits for fed and delivered datagrams alike, in the order they came.
type Conn struct {
	*net.UDPConn // nil for a fed Conn

	// fed, for a fed Conn, holds a token while datagrams wait for the
	// reader; nil otherwise.
	fed chan struct{}

	raw *mmsg.Receiver // reads the socket with raw system calls; nil: through UDPConn

	tap func(p []byte, from netip.AddrPort) bool // see SetTap; set before the first Deliver

	mu      sync.Mutex // guards everything below
	queue   ring
	blocked bool // the reader is in, or about to enter, a kernel read
	woken   bool // a past deadline was set to end that read
	closed  bool
}

// NewConn wraps c; queued is how many delivered datagrams may wait for
// the reader before more are dropped (as a full socket buffer would).
func NewConn(c *net.UDPConn, queued int) *Conn {
	return &Conn{UDPConn: c, raw: mmsg.NewReceiver(c), queue: ring{slots: make([]slot, queued)}}
}

// NewFedConn is a fed Conn: the kernel's datagrams of its socket, which
// it does not hold, come in through Feed. It has no socket methods: only
// Read (and ReadFrom, ReadFromAddrPort), Deliver, Feed and Close.
func NewFedConn(queued int) *Conn {
	return &Conn{fed: make(chan struct{}, 1), queue: ring{slots: make([]slot, queued)}}
}

// Deliver queues a copy of p for the reader, as if from the address from.
// It reports false, having dropped p, when the queue is full, p is over
// MaxPacket or the Conn is closed.
func (c *Conn) Deliver(p []byte, from netip.AddrPort) bool {
	return c.enqueue(p, from, true)
}

// SetTap makes tap see every datagram Deliver is given, on the delivering
// goroutine, before it is queued: a datagram tap takes (true) is not
// queued, and the reader never wakes for it. The SFU's media socket takes
// its relayed subscribers' RTCP so, as its reader takes the direct ones'
// from the kernel: one goroutine woken per packet (the relay's), not
// two. tap must be safe for concurrent calls, and with the reader's. Set
// it before the first Deliver.
func (c *Conn) SetTap(tap func(p []byte, from netip.AddrPort) bool) { c.tap = tap }

// Feed queues a copy of p, a datagram the kernel gave from the address
// from, for a fed Conn's reader, as Deliver does.
func (c *Conn) Feed(p []byte, from netip.AddrPort) bool {
	return c.enqueue(p, from, false)
}

func (c *Conn) enqueue(p []byte, from netip.AddrPort, handed bool) bool {
	if len(p) > MaxPacket {
		return false
	}
	if handed && c.tap != nil && c.tap(p, from) {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.queue.push(p, from, handed) {
		return false
	}
	switch {
	case c.fed != nil:
		c.wake()
	case c.blocked && !c.woken:
		c.woken = true
		_ = c.UDPConn.SetReadDeadline(longAgo) // fails only when closed: the read ends anyway
	}
	return true
}

// wake leaves a fed Conn's reader a token, unless one waits already.
func (c *Conn) wake() {
	select {
	case c.fed <- struct{}{}:
	default:
	}
}

// Read returns the next datagram, a delivered one first (a fed Conn's in
// the order they came); handed reports whether it was delivered rather
// than read from the kernel (or fed).
func (c *Conn) Read(b []byte) (n int, from netip.AddrPort, handed bool, err error) {
	for {
		c.mu.Lock()
		if n, from, handed, ok := c.queue.pop(b); ok {
			c.mu.Unlock()
			return n, from, handed, nil
		}
		if c.fed != nil {
			closed := c.closed
			c.mu.Unlock()
			if closed {
				return 0, netip.AddrPort{}, false, net.ErrClosed
			}
			<-c.fed
			continue
		}
		c.blocked = true
		c.mu.Unlock()

		if c.raw != nil {
			n, from, err = c.raw.ReadFromAddrPort(b)
		} else {
			n, from, err = c.UDPConn.ReadFromUDPAddrPort(b)
		}

		c.mu.Lock()
		woken := c.woken
		c.blocked, c.woken = false, false
		if woken {
			_ = c.UDPConn.SetReadDeadline(time.Time{})
		}
		c.mu.Unlock()
		if err == nil || !woken || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, from, false, err
		}
	}
}

// ReadFromAddrPort returns the next datagram, a delivered one first. With
// it Pion's ICE mux reads the Conn without allocating.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, _, err := c.Read(b)
	return n, from, err
}

// ReadFrom returns the next datagram, a delivered one first.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, _, err := c.Read(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Close closes the socket, which ends a blocked read (a fed Conn's
// reader is woken instead); what is still queued is dropped, and later
// deliveries are refused.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.queue.reset()
	c.mu.Unlock()
	if c.fed != nil {
		c.wake()
		return nil
	}
	return c.UDPConn.Close()
}

// slot is one queued datagram. Its buffer is allocated on first use and
// kept, so a queue costs memory only up to the deepest it has been.
type slot struct {
	buf    []byte
	n      int
	from   netip.AddrPort
	handed bool // by Deliver, not Feed
}

// ring is a bounded FIFO of datagrams, copied in and out.
type ring struct {
	slots      []slot
	head, size int
}

func (r *ring) push(p []byte, from netip.AddrPort, handed bool) bool {
	if r.size == len(r.slots) {
		return false
	}
	s := &r.slots[(r.head+r.size)%len(r.slots)]
	if s.buf == nil {
		s.buf = make([]byte, MaxPacket)
	}
	s.n, s.from, s.handed = copy(s.buf, p), from, handed
	r.size++
	return true
}

// pop copies the oldest datagram into b (truncated to b, as a socket
// read would) and removes it.
func (r *ring) pop(b []byte) (n int, from netip.AddrPort, handed, ok bool) {
	if r.size == 0 {
		return 0, netip.AddrPort{}, false, false
	}
	s := &r.slots[r.head]
	n = copy(b, s.buf[:s.n])
	r.head = (r.head + 1) % len(r.slots)
	r.size--
	return n, s.from, s.handed, true
}

func (r *ring) reset() {
	r.head, r.size = 0, 0
}
