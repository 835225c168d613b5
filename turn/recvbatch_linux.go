//go:build linux && (amd64 || arm64)

package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvBatch is how many datagrams one recvmmsg takes at most. Clients'
// packets arrive in bursts (coturn's test client sends for all its
// sessions on each 20 ms tick; browsers' packets bunch up behind a
// scheduler's tick too), and one system call then takes the burst.
const recvBatch = 32

// recvBuffer holds one datagram: above Pion's 1600-byte read buffer, so
// that a datagram too large for Pion still looks too large to it.
const recvBuffer = 2048

// mmsghdr is struct mmsghdr of a 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// batchReader reads a UDP socket with recvmmsg and hands the datagrams
// out one per ReadFrom, as Pion's read loop asks for them: one system call
// and one wake-up of the loop per burst instead of per datagram. It has a
// single reader (the loop) and allocates nothing per datagram: the
// buffers are its own, and the source addresses it returns come from a
// bounded cache, which Pion only reads.
type batchReader struct {
	rc    syscall.RawConn
	bufs  [recvBatch][recvBuffer]byte
	names [recvBatch]unix.RawSockaddrInet6
	iovs  [recvBatch]unix.Iovec
	hdrs  [recvBatch]mmsghdr
	n     int // datagrams in the batch
	next  int // the next one to hand out
	addrs addrCache
	recv  func(fd uintptr) bool // recvmmsg as a value made once
	err   error                 // of the last recvmmsg
	got   int                   // datagrams the last recvmmsg took
}

// newBatchReader reads c in batches, or returns nil when c cannot be.
func newBatchReader(c net.PacketConn) *batchReader {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &batchReader{rc: rc, addrs: newAddrCache()}
	r.recv = r.recvmmsg
	for i := range r.hdrs {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(recvBuffer)
		r.hdrs[i].hdr.Iov = &r.iovs[i]
		r.hdrs[i].hdr.SetIovlen(1)
		r.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	return r
}

// ReadFrom copies the next datagram into b, reading a new batch when the
// last is handed out; it fails as the socket's read does (closed, a
// deadline).
func (r *batchReader) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, addr, err := r.readFrom(b)
	return n, addr, err
}

// readFrom is ReadFrom that also returns the source as an AddrPort.
func (r *batchReader) readFrom(b []byte) (int, netip.AddrPort, net.Addr, error) {
	if r.next == r.n {
		if err := r.fill(); err != nil {
			return 0, netip.AddrPort{}, nil, err
		}
	}
	i := r.next
	r.next++
	n := copy(b, r.bufs[i][:min(int(r.hdrs[i].n), recvBuffer)])
	ap := sockaddrAddrPort(&r.names[i])
	return n, ap, r.addrs.get(ap), nil
}

// fill waits for the socket to be readable and takes what is queued.
func (r *batchReader) fill() error {
	for i := range r.hdrs {
		r.hdrs[i].hdr.Namelen = uint32(unsafe.Sizeof(r.names[i]))
		r.hdrs[i].hdr.Flags = 0
	}
	err := r.rc.Read(r.recv)
	if err == nil {
		err = r.err
	}
	if err != nil {
		return err
	}
	r.n, r.next = r.got, 0
	return nil
}

// recvmmsg is the RawConn.Read callback: false asks to wait for
// readability and try again.
func (r *batchReader) recvmmsg(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), recvBatch, unix.MSG_DONTWAIT, 0, 0)
	for errno == unix.EINTR {
		n, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), recvBatch, unix.MSG_DONTWAIT, 0, 0)
	}
	switch errno {
	case unix.EAGAIN:
		return false
	case 0:
		r.got, r.err = int(n), nil
	default:
		r.got, r.err = 0, errno
	}
	return true
}

// sockaddrAddrPort decodes a sockaddr_in or sockaddr_in6, unmapped.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if sa.Family == unix.AF_INET {
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
}
