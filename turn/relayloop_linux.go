//go:build linux && (amd64 || arm64)

package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/media-service/media-service/internal/mmsg"
)

// The relay loop reads every UDP client's relayed socket in one goroutine,
// as coturn reads its relayed sockets from one event loop.
//
// A relayed socket read by a goroutine of its own (Pion's allocation
// reader, blocked in Go's netpoller) costs a wake-up of that goroutine,
// and often of a thread, for every datagram a peer sends: the peers of
// different allocations send at different moments, so nothing is ever
// read in a batch. The loop instead keeps the relayed sockets in an epoll
// set of its own, itself registered in Go's netpoller: one wake-up of one
// goroutine takes whatever became readable meanwhile on any of them, one
// recvmmsg per ready socket, and the ChannelData for the clients leaves in
// one sendmmsg on the listener (the batchWriter held during the round).
//
// The sockets are raw non-blocking descriptors that Go's netpoller never
// sees: a socket registered there too would wake the netpoller's thread
// for every datagram even with no goroutine waiting on it. Each datagram
// gets exactly the checks and counts of relayConn.ReadFrom
// (relayConn.fromLoop); one the loop cannot relay on a bound channel goes
// to the allocation's inbox, where Pion's reader takes it (Data
// indications). With a handoff to the SFU (handoff.go) the inbox is also
// the relayed socket's handoff Conn, where the SFU's datagrams that are
// not relayed on a channel arrive: the in-memory path is unchanged. The
// relayed sockets of TCP and TLS clients keep Pion's reader.

// loopEvents is how many ready sockets one epoll_wait reports at most;
// more wait for the next round.
const loopEvents = 128

// relayLoop is the epoll set of the UDP clients' relayed sockets and the
// goroutine that reads them. Its sockets are registered by id, never
// reused while the loop runs, so an event for a socket closed meanwhile
// finds nothing instead of a newer socket on the same descriptor.
type relayLoop struct {
	ep   *os.File        // the epoll descriptor, in Go's netpoller
	epfd int             // ep's number, for epoll_ctl (ep.Fd would make it blocking)
	raw  syscall.RawConn // ep's, to wait on it there
	out  *batchWriter    // the TURN/UDP listener's writes
	wait func(fd uintptr) bool
	done chan struct{} // closed when run returns; nil until start; guarded by mu

	// Owned by run's goroutine.
	events [loopEvents]unix.EpollEvent
	ready  int
	batch  mmsgBatch

	// mu guards socks, next, closed and done, and is held while run reads the
	// sockets of a round, so that a socket's remove waits for the round
	// and no read reaches a descriptor after its close; epfd is used only
	// under it, before closed.
	mu     sync.Mutex
	socks  map[uint32]*loopSocket
	next   uint32
	closed bool
}

// newRelayLoop makes an empty loop whose channel data leaves through out.
func newRelayLoop(out *batchWriter) (*relayLoop, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	ep := os.NewFile(uintptr(fd), "turn-relay-epoll")
	raw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	l := &relayLoop{ep: ep, epfd: fd, raw: raw, out: out, socks: map[uint32]*loopSocket{}}
	l.wait = l.poll
	l.batch.init()
	return l, nil
}

// start runs the loop on a goroutine of its own until close, unless it
// is closed already.
func (l *relayLoop) start() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.done = make(chan struct{})
		go l.run()
	}
}

// close ends the loop and waits for its goroutine, if it was started.
// The sockets are closed by their relayConns; one adopted later is
// refused. It is idempotent.
func (l *relayLoop) close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.closed = true
	done := l.done
	l.mu.Unlock()
	l.ep.Close() // ends run's wait
	if done != nil {
		<-done
	}
}

func (l *relayLoop) run() {
	defer close(l.done)
	for l.raw.Read(l.wait) == nil {
		l.round()
	}
}

// poll is the RawConn.Read callback: it takes the ready sockets without
// waiting, and asks Go's netpoller to wait when there are none.
func (l *relayLoop) poll(fd uintptr) bool {
	for {
		n, _, errno := mmsg.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&l.events[0])), loopEvents, 0, 0, 0) // no sigmask: epoll_wait
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0 || n == 0:
			return false // nothing ready
		}
		l.ready = int(n)
		return true
	}
}

// round reads each ready socket once, one recvmmsg of at most recvBatch
// datagrams (a socket with more stays ready, level-triggered, for the
// next round: a flood on one allocation does not starve the others), and
// sends the channel data of the round together.
func (l *relayLoop) round() {
	l.out.Hold()
	l.mu.Lock()
	for _, ev := range l.events[:l.ready] {
		if s := l.socks[uint32(ev.Fd)]; s != nil {
			l.read(s)
		}
	}
	l.mu.Unlock()
	l.out.Release()
}

// read takes what s has queued and hands each datagram to its relayConn.
func (l *relayLoop) read(s *loopSocket) {
	n, errno := l.batch.recv(uintptr(s.fd))
	if errno != 0 { // EAGAIN; an ICMP error queued by the kernel is dropped
		return
	}
	for i := range n {
		p, from := l.batch.datagram(i)
		s.rc.fromLoop(p, from)
	}
}

// listen binds a relayed socket on bind:port, not yet in the loop.
func (l *relayLoop) listen(bind string, port int) (net.PacketConn, error) {
	ip, err := netip.ParseAddr(bind)
	if err != nil || !ip.Unmap().Is4() {
		return nil, fmt.Errorf("relay bind address %q is not IPv4", bind)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: ip.Unmap().As4()}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("getsockname", err)
	}
	local := sa.(*unix.SockaddrInet4)
	return &loopSocket{fd: fd, loop: l, local: &net.UDPAddr{IP: net.IP(local.Addr[:]), Port: local.Port}}, nil
}

// adopt puts rc's socket in the loop, when it is one of the loop's: from
// then on the loop reads it and Pion's reader reads rc's inbox. It fails
// for a socket closed meanwhile or once the loop is closed.
func (l *relayLoop) adopt(rc *relayConn) error {
	s, ok := rc.PacketConn.(*loopSocket)
	if l == nil || !ok {
		return nil
	}
	s.mu.Lock() // before l.mu, as in Close
	defer s.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.closed || l.closed {
		return net.ErrClosed
	}
	for l.next++; l.next == 0 || l.socks[l.next] != nil; l.next++ {
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.next)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	s.rc, s.id = rc, l.next
	l.socks[s.id] = s
	return nil
}

// remove takes s out of the loop, after the round under way, if any. The
// caller holds s.mu.
func (l *relayLoop) remove(s *loopSocket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.id == 0 || l.socks[s.id] != s {
		return
	}
	delete(l.socks, s.id)
	if !l.closed {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, s.fd, nil) // its close would remove it too
	}
}

// loopSocket is a relayed UDP socket the relay loop reads: a non-blocking
// descriptor outside Go's netpoller. Writes (the client's datagrams to
// its peers, from the listener's goroutine or Pion's) are sendto on the
// descriptor; its close first leaves the loop, then waits for the writes
// under way, so that no read or write reaches a descriptor number reused
// after it.
type loopSocket struct {
	fd    int
	loop  *relayLoop
	local *net.UDPAddr
	id    uint32     // in the loop; 0 before adopt
	rc    *relayConn // set by adopt, before the loop sees the socket

	// mu is held shared by writes, exclusively by adopt and Close (which
	// take loop.mu inside it); it guards closed, id and rc.
	mu     sync.RWMutex
	closed bool
}

// errLoopDeadline: nothing in the relay sets deadlines on a relayed socket.
var errLoopDeadline = errors.New("turn: relayed sockets take no deadlines")

// WriteTo sends p to addr, an IPv4 UDP address, with a raw system call
// (see mmsg.RawSyscall6: the socket does not block). A datagram the socket
// buffer cannot take is dropped, as the network would drop it further on:
// the relay is best effort and must not block the listener's loop.
func (s *loopSocket) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, ok := addrPort(addr)
	ip := ap.Addr().Unmap()
	if !ok || !ip.Is4() {
		return 0, &net.OpError{Op: "write", Net: "udp4", Source: s.local, Addr: addr, Err: unix.EAFNOSUPPORT}
	}
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, &net.OpError{Op: "write", Net: "udp4", Source: s.local, Addr: addr, Err: net.ErrClosed}
	}
	for {
		_, _, errno := mmsg.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
			0, uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)
		switch errno {
		case unix.EINTR:
			continue
		case 0, unix.EAGAIN:
			return len(p), nil
		}
		return 0, &net.OpError{Op: "write", Net: "udp4", Source: s.local, Addr: addr, Err: os.NewSyscallError("sendto", errno)}
	}
}

// ReadFrom is never called: the loop reads the socket, and Pion's reader
// reads the relayConn's inbox.
func (s *loopSocket) ReadFrom([]byte) (int, net.Addr, error) {
	return 0, nil, &net.OpError{Op: "read", Net: "udp4", Source: s.local, Err: errors.ErrUnsupported}
}

// Close waits for the writes under way, leaves the loop after its round
// under way, closes the descriptor, and ends the wait of Pion's reader.
// It is idempotent.
func (s *loopSocket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.loop.remove(s)
	if s.rc != nil {
		s.rc.inbox.Close()
	}
	return os.NewSyscallError("close", unix.Close(s.fd))
}

// LocalAddr is the bound address; callers only read it.
func (s *loopSocket) LocalAddr() net.Addr { return s.local }

// SetDeadline and its kin fail: see errLoopDeadline.
func (s *loopSocket) SetDeadline(time.Time) error      { return errLoopDeadline }
func (s *loopSocket) SetReadDeadline(time.Time) error  { return errLoopDeadline }
func (s *loopSocket) SetWriteDeadline(time.Time) error { return errLoopDeadline }
