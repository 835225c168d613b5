//go:build linux && (amd64 || arm64)

package mmsg

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// MaxBatch is the most datagrams one Sender.Send takes.
const MaxBatch = 64

// Hdr is struct mmsghdr of a 64-bit Linux.
type Hdr struct {
	Msg unix.Msghdr
	Len uint32 // bytes sent or received
	_   [4]byte
}

// RawSyscall6 makes a system call that never blocks (on a non-blocking
// socket, or with MSG_DONTWAIT, or an epoll_wait that does not wait)
// without telling the scheduler, as the runtime's own netpoller does. A
// call through syscall.Syscall6 enters a "syscall" state in which sysmon
// must be awake to take the P back should the call block; when the
// process was idle, sysmon is asleep and each such call wakes it.
func RawSyscall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (uintptr, uintptr, unix.Errno) {
	return unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
}

// Sender sends batches on one socket. It is not safe for concurrent use:
// its one caller at a time is whoever holds the batch's lock.
type Sender struct {
	rc    syscall.RawConn
	v6    bool // an AF_INET6 socket: IPv4 destinations go as sockaddr_in, which it takes
	hdrs  [MaxBatch]Hdr
	names [MaxBatch]unix.RawSockaddrInet6
	iovs  [MaxBatch]unix.Iovec
	call  func(fd uintptr) bool // sendmmsg as a value made once

	n, sent int        // datagrams in hdrs; sent by the last call
	errno   unix.Errno // of the last call
}

// NewSender sends on c, or returns nil when it cannot (then the caller
// sends with x/net).
func NewSender(c *net.UDPConn) *Sender {
	rc, v6, ok := rawSocket(c)
	if !ok {
		return nil
	}
	s := &Sender{rc: rc, v6: v6}
	s.call = s.sendmmsg
	return s
}

// Send sends msgs (at most MaxBatch), each one buffer to a *net.UDPAddr,
// and returns how many the kernel took: fewer when one fails, whose
// error it returns if it is the first, as x/net's WriteBatch does. A
// destination the socket's family cannot carry, or with an IPv6 zone,
// ends the batch there; alone it is an error.
func (s *Sender) Send(msgs []ipv4.Message) (int, error) {
	s.n = 0
	for i := range min(len(msgs), MaxBatch) {
		ua, ok := msgs[i].Addr.(*net.UDPAddr)
		if !ok || !s.putName(i, ua) {
			break
		}
		b := msgs[i].Buffers[0]
		s.iovs[i].Base = unsafe.SliceData(b)
		s.iovs[i].SetLen(len(b))
		h := &s.hdrs[i].Msg
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
		s.n++
	}
	if s.n == 0 {
		return 0, unix.EAFNOSUPPORT
	}
	if err := s.rc.Write(s.call); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, s.errno
	}
	return s.sent, nil
}

// putName writes ua as the i-th destination in the socket's family.
func (s *Sender) putName(i int, ua *net.UDPAddr) bool {
	n := putName(&s.names[i], s.v6, ua.AddrPort())
	s.hdrs[i].Msg.Namelen = n
	return n != 0
}

// putName writes ap into sa as a socket of the family v6 says takes it
// (an AF_INET6 socket takes IPv4 destinations as sockaddr_in), and
// returns its length: 0 when the socket cannot carry ap, or when ap has
// an IPv6 zone (a scope id would need the interface's index).
func putName(sa *unix.RawSockaddrInet6, v6 bool, ap netip.AddrPort) uint32 {
	ip := ap.Addr()
	switch {
	case ip.Zone() != "":
		return 0
	case ip.Unmap().Is4():
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*in4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&in4.Port))[:], ap.Port())
		return unix.SizeofSockaddrInet4
	case v6 && ip.Is6():
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		return unix.SizeofSockaddrInet6
	}
	return 0
}

// sendmmsg is the RawConn.Write callback: false asks to wait until the
// socket is writable and try again.
func (s *Sender) sendmmsg(fd uintptr) bool {
	for {
		n, _, errno := RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.n), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.sent, s.errno = int(n), errno
		return true
	}
}

// Single sends one datagram at a time with a raw sendto: the writes of
// a socket that are not batched (RTCP, STUN). Through net.UDPConn each
// would enter the syscall state and, the process being idle between two
// of them, wake sysmon (see the package comment). Safe for concurrent
// use: each call takes its own sockaddr and callback from a pool.
type Single struct {
	rc    syscall.RawConn
	v6    bool
	laddr net.Addr // for errors, as net.UDPConn's name it
	pool  sync.Pool
}

// sendto is one Single call's state: the callback RawConn.Write runs is
// made once per pooled value, not per datagram.
type sendto struct {
	p       []byte
	name    unix.RawSockaddrInet6
	nameLen uint32
	errno   unix.Errno
	n       int
	call    func(fd uintptr) bool
}

// NewSingle sends on c, or returns nil when it cannot (then the caller
// sends with c).
func NewSingle(c *net.UDPConn) *Single {
	rc, v6, ok := rawSocket(c)
	if !ok {
		return nil
	}
	s := &Single{rc: rc, v6: v6, laddr: c.LocalAddr()}
	s.pool.New = func() any {
		st := &sendto{}
		st.call = st.sendto
		return st
	}
	return s
}

// WriteToAddrPort sends p to ap, waiting in Go's netpoller while the
// socket's send buffer is full, as net.UDPConn.WriteToUDPAddrPort does,
// with the errors it gives. ok is false, and nothing sent, for a
// destination this sender does not take (an IPv6 zone, an IPv6 address
// on an IPv4 socket): the caller sends it with net's.
func (s *Single) WriteToAddrPort(p []byte, ap netip.AddrPort) (n int, ok bool, err error) {
	st := s.pool.Get().(*sendto)
	defer s.pool.Put(st)
	if st.nameLen = putName(&st.name, s.v6, ap); st.nameLen == 0 {
		return 0, false, nil
	}
	st.p = p
	err = s.rc.Write(st.call)
	st.p = nil
	if err != nil {
		return 0, true, err // the netpoller's: closed, a deadline
	}
	if st.errno != 0 {
		return 0, true, &net.OpError{Op: "write", Net: "udp", Source: s.laddr, Addr: net.UDPAddrFromAddrPort(ap), Err: os.NewSyscallError("sendto", st.errno)}
	}
	return st.n, true, nil
}

// sendto is the RawConn.Write callback: false asks to wait until the
// socket is writable and try again.
func (st *sendto) sendto(fd uintptr) bool {
	for {
		n, _, errno := RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(st.p))), uintptr(len(st.p)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&st.name)), uintptr(st.nameLen))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		st.n, st.errno = int(n), errno
		return true
	}
}

// Receiver reads one socket's datagrams with a raw recvfrom each: the
// reads' counterpart of Sender, for a socket read one datagram at a time
// (Pion's ICE mux reads so). Not safe for concurrent use: the socket's
// one reader uses it.
type Receiver struct {
	rc   syscall.RawConn
	call func(fd uintptr) bool // recvfrom as a value made once

	buf     []byte
	from    unix.RawSockaddrInet6
	fromLen uint32
	n       int
	errno   unix.Errno
}

// NewReceiver reads c, or returns nil when it cannot (then the caller
// reads c as it is).
func NewReceiver(c *net.UDPConn) *Receiver {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	r := &Receiver{rc: rc}
	r.call = r.recvfrom
	return r
}

// ReadFromAddrPort reads the next datagram into b, waiting for one in
// Go's netpoller (so the socket's read deadline and Close end the wait,
// with the errors a net.UDPConn's read gives), and returns its source as
// net.UDPConn.ReadFromUDPAddrPort would: IPv4 sources of an AF_INET6
// socket mapped, an IPv6 zone named. A datagram longer than b is cut.
func (r *Receiver) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if len(b) == 0 {
		return 0, netip.AddrPort{}, unix.EINVAL
	}
	r.buf = b
	err := r.rc.Read(r.call)
	r.buf = nil
	if err != nil {
		return 0, netip.AddrPort{}, err // the netpoller's: closed, a deadline
	}
	if r.errno != 0 {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvfrom", r.errno)}
	}
	return r.n, r.source(), nil
}

// recvfrom is the RawConn.Read callback: false asks to wait until the
// socket is readable and try again.
func (r *Receiver) recvfrom(fd uintptr) bool {
	for {
		r.fromLen = uint32(unsafe.Sizeof(r.from))
		n, _, errno := RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.buf))), uintptr(len(r.buf)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&r.from)), uintptr(unsafe.Pointer(&r.fromLen)))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.n, r.errno = int(n), errno
		return true
	}
}

// source is the last datagram's source, as Go's net gives it.
func (r *Receiver) source() netip.AddrPort {
	sa := &r.from
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if sa.Family == unix.AF_INET {
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), port)
	}
	ip := netip.AddrFrom16(sa.Addr)
	if sa.Scope_id != 0 {
		if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
			ip = ip.WithZone(ifi.Name)
		}
	}
	return netip.AddrPortFrom(ip, port)
}

// rawSocket is c's raw connection and whether its socket is AF_INET6
// (else AF_INET); ok is false when either cannot be had.
func rawSocket(c *net.UDPConn) (rc syscall.RawConn, v6, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, false, false
	}
	switch socketFamily(rc) {
	case unix.AF_INET:
		return rc, false, true
	case unix.AF_INET6:
		return rc, true, true
	}
	return nil, false, false
}

// socketFamily is AF_INET or AF_INET6 for the socket of rc, -1 when it
// cannot be told.
func socketFamily(rc syscall.RawConn) int {
	family := -1
	if err := rc.Control(func(fd uintptr) {
		if sa, err := unix.Getsockname(int(fd)); err == nil {
			switch sa.(type) {
			case *unix.SockaddrInet4:
				family = unix.AF_INET
			case *unix.SockaddrInet6:
				family = unix.AF_INET6
			}
		}
	}); err != nil {
		return -1
	}
	return family
}
