package sfu

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"

	"github.com/media-service/media-service/internal/handoff"
	"github.com/media-service/media-service/internal/mmsg"
)

// batchSize is how many datagrams one sendmmsg carries at most: a fan-out
// to more subscribers leaves in several.
const batchSize = mmsg.MaxBatch

// batchConn is the UDP socket the ICE mux reads and writes, able to hold
// writes back while a publication fans a packet out and then hand them to
// the kernel in one sendmmsg call instead of one sendto each. A fan-out to
// 50 subscribers is 50 system calls otherwise, about half the instance's
// CPU (docs/performance.md).
//
// Writes are held only between hold and release (the fan-out's), from any
// goroutine: an ICE check or RTCP packet written meanwhile waits at most
// until the fan-out ends, under a millisecond. Outside them a write is a
// plain sendto.
//
// Batching is Linux's: sendmmsg exists there, and there a dual-stack
// socket (Go's choice for a wildcard bind) takes the sockaddr_in that x/net
// writes for an IPv4 destination as well as a sockaddr_in6. Elsewhere
// hold and release do nothing and every write is a plain sendto. On
// amd64 and arm64 the sendmmsg is a raw system call (internal/mmsg): made
// through the scheduler, each batch woke the runtime's sysmon thread and,
// lasting longer than its poll, lost the P to another thread.
//
// Datagrams for the relayed address of one of this instance's own TURN
// allocations do not reach the kernel: routes hands them to the
// allocation in memory, and the relay's datagrams for the SFU arrive the
// same way, merged into the reads (internal/handoff), but for the relayed
// subscribers' RTCP, which their taps take as it is handed over.
//
// Pion's mux uses the AddrPortReaderWriter methods when a connection has
// them; WriteTo is kept for any other caller.
type batchConn struct {
	*handoff.Conn
	routes *handoff.Switch
	taps   rtcpTaps     // the subscribers' RTCP, taken as it is read
	batch  *mmsg.Writer // nil: no batching (not Linux)
	single *mmsg.Single // nil: single datagrams go through net (not Linux)

	mu    sync.Mutex     // guards the fields below
	holds atomic.Int32   // fan-outs under way; changed under mu, read without it first
	lent  handoff.Lender // the relay whose buffer reserve lent, until commit or cancel
	n     int            // datagrams held
	msgs  []ipv4.Message
	bufs  [][maxRingPacket]byte
	addrs []net.UDPAddr
	ips   [][net.IPv6len]byte
	// errs counts datagrams a batch failed to send (the kernel refused
	// the destination); a plain sendto's error goes to its caller.
	errs func(n int)
}

// newBatchConn wraps c, the socket of routes' media Conn. errs is told of
// datagrams that could not be sent.
func newBatchConn(c *net.UDPConn, errs func(n int)) *batchConn {
	hc := handoff.NewConn(c, handoff.MediaQueue)
	b := &batchConn{Conn: hc, routes: handoff.NewSwitch(hc), single: mmsg.NewSingle(c), errs: errs}
	hc.SetTap(b.taps.take) // the relayed subscribers' RTCP, on the relay's goroutine
	if runtime.GOOS == "linux" {
		// mmsg.Writer's sendmmsg (raw, or x/net's WriteBatch where it
		// cannot be) marshals each destination by its own family, IPv6
		// ones too, whatever the ipv4.Message type says.
		b.batch = mmsg.NewWriter(c)
		b.msgs = make([]ipv4.Message, batchSize)
		b.bufs = make([][maxRingPacket]byte, batchSize)
		b.addrs = make([]net.UDPAddr, batchSize)
		b.ips = make([][net.IPv6len]byte, batchSize)
		for i := range b.msgs {
			b.msgs[i].Buffers = make([][]byte, 1)
		}
	}
	return b
}

// ReadFromAddrPort is the read of Pion's UDP mux, the socket's one
// reader: the next datagram, after handing the subscribers' RTCP that
// their taps take to their connections (rtcptap.go). A datagram the
// relay handed over was offered to the taps already, as it was handed.
func (b *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	for {
		n, from, handed, err := b.Conn.Read(p)
		if err != nil || handed || !b.taps.take(p[:n], from) {
			return n, from, err
		}
	}
}

// hold starts holding writes back, and the relay's writes to relayed
// subscribers with them (handoff.Switch.Hold); every hold must be
// released.
func (b *batchConn) hold() {
	b.routes.Hold()
	if b.batch == nil {
		return
	}
	b.mu.Lock()
	b.holds.Add(1)
	b.mu.Unlock()
}

// release ends a hold and sends what is held, the relay's too.
func (b *batchConn) release() {
	defer b.routes.Release()
	if b.batch == nil {
		return
	}
	b.mu.Lock()
	b.holds.Add(-1)
	b.flush()
	b.mu.Unlock()
}

// WriteToAddrPort sends p to addr, or holds it while a fan-out is under
// way, or hands it to the TURN allocation that holds addr.
func (b *batchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	if b.routes.Send(p, addr) {
		return len(p), nil
	}
	if len(p) > maxRingPacket || !b.batches(addr) {
		return b.send(p, addr)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holds.Load() == 0 { // released meanwhile: nobody would flush it
		return b.send(p, addr)
	}
	b.queue(copy(b.next(), p), addr)
	return len(p), nil
}

// send sends p to addr now: with a raw sendto where it can, so that
// the connections' RTCP and STUN, written while the process is otherwise
// idle, do not wake the runtime's sysmon thread each (internal/mmsg).
func (b *batchConn) send(p []byte, addr netip.AddrPort) (int, error) {
	if b.single != nil {
		if n, ok, err := b.single.WriteToAddrPort(p, addr); ok {
			return n, err
		}
	}
	return b.UDPConn.WriteToUDPAddrPort(p, addr)
}

// batches reports whether a datagram for addr, which no TURN allocation
// holds, would be held now.
func (b *batchConn) batches(addr netip.AddrPort) bool {
	return b.batch != nil && b.holds.Load() > 0 && addr.Addr().Zone() == ""
}

// reserve lends the buffer of the batch's next datagram to a writer that
// fills it in place (the direct writer encrypts into it, sparing the copy
// WriteToAddrPort makes, and a buffer of its own that each copy would
// find cold), or returns nil when a datagram for addr is not held now.
// For the relayed address of a TURN allocation the buffer is the relay's
// (handoff.Lender), in its batch for the client. After a buffer, b.mu is
// held until commit or cancel.
func (b *batchConn) reserve(addr netip.AddrPort) []byte {
	if !b.batches(addr) {
		return nil
	}
	r, routed := b.routes.Route(addr)
	var lender handoff.Lender
	if routed {
		if lender, _ = r.Sender.(handoff.Lender); lender == nil {
			return nil
		}
	}
	b.mu.Lock()
	if b.holds.Load() == 0 {
		b.mu.Unlock()
		return nil
	}
	if lender == nil {
		return b.next()
	}
	buf := lender.Lend(r.Peer)
	if buf == nil {
		b.mu.Unlock()
		return nil
	}
	b.lent = lender
	return buf
}

// commit holds the reserved buffer's first n bytes for addr.
func (b *batchConn) commit(n int, addr netip.AddrPort) {
	if b.lent != nil {
		b.lent.Commit(n)
		b.lent = nil
	} else {
		b.queue(n, addr)
	}
	b.mu.Unlock()
}

// cancel gives the reserved buffer back unused.
func (b *batchConn) cancel() {
	if b.lent != nil {
		b.lent.Cancel()
		b.lent = nil
	}
	b.mu.Unlock()
}

// next is the buffer of the batch's next datagram, sending the batch
// first when it is full. b.mu is held.
func (b *batchConn) next() []byte {
	if b.n == batchSize {
		b.flush()
	}
	return b.bufs[b.n][:]
}

// queue holds the first n bytes of next's buffer for addr. b.mu is held.
func (b *batchConn) queue(n int, addr netip.AddrPort) {
	i := b.n
	ip := addr.Addr().Unmap()
	b.ips[i] = ip.As16()
	b.addrs[i] = net.UDPAddr{IP: b.ips[i][:], Port: int(addr.Port())}
	if ip.Is4() {
		b.addrs[i].IP = b.ips[i][12:]
	}
	b.msgs[i].Buffers[0] = b.bufs[i][:n]
	b.msgs[i].Addr = &b.addrs[i]
	b.n++
}

// WriteTo sends p to addr through WriteToAddrPort.
func (b *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if a, ok := addr.(*net.UDPAddr); ok {
		return b.WriteToAddrPort(p, a.AddrPort())
	}
	return b.UDPConn.WriteTo(p, addr)
}

// flush sends the held datagrams. A datagram the kernel refuses is
// counted and skipped, so one bad destination costs only itself. b.mu is
// held.
func (b *batchConn) flush() {
	if refused := b.batch.SendAll(b.msgs[:b.n]); refused > 0 {
		b.errs(refused)
	}
	for i := range b.n {
		b.msgs[i].Addr = nil
	}
	b.n = 0
}
