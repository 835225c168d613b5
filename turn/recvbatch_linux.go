//go:build linux && (amd64 || arm64)

package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/media-service/media-service/internal/mmsg"
)

// recvBatch is how many datagrams one recvmmsg takes at most. Clients'
// packets arrive in bursts (coturn's test client sends for all its
// sessions on each 20 ms tick; browsers' packets bunch up behind a
// scheduler's tick too), and one system call then takes the burst.
const recvBatch = 32

// recvBuffer holds one datagram: above Pion's 1600-byte read buffer, so
// that a datagram too large for Pion still looks too large to it.
const recvBuffer = 2048

// mmsgBatch is the buffers of one recvmmsg: recvBatch datagrams of up to
// recvBuffer bytes and their sources. Its one user (a read loop) owns it,
// so it has no lock, and a read allocates nothing.
type mmsgBatch struct {
	bufs  [recvBatch][recvBuffer]byte
	names [recvBatch]unix.RawSockaddrInet6
	iovs  [recvBatch]unix.Iovec
	hdrs  [recvBatch]mmsg.Hdr
}

// init points the headers at the buffers; b must not move afterwards.
func (b *mmsgBatch) init() {
	for i := range b.hdrs {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(recvBuffer)
		b.hdrs[i].Msg.Iov = &b.iovs[i]
		b.hdrs[i].Msg.SetIovlen(1)
		b.hdrs[i].Msg.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
}

// recv takes what fd has queued, up to a batch, without waiting: EAGAIN
// when nothing is. See mmsg.RawSyscall6 for why it is a raw system call.
func (b *mmsgBatch) recv(fd uintptr) (int, unix.Errno) {
	for i := range b.hdrs {
		b.hdrs[i].Msg.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		b.hdrs[i].Msg.Flags = 0
	}
	for {
		n, _, errno := mmsg.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), recvBatch, unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			return int(n), errno
		}
	}
}

// datagram is the i-th datagram of the last recv, cut to recvBuffer, and
// its source, unmapped.
func (b *mmsgBatch) datagram(i int) ([]byte, netip.AddrPort) {
	return b.bufs[i][:min(int(b.hdrs[i].Len), recvBuffer)], sockaddrAddrPort(&b.names[i])
}

// batchReader reads a UDP socket with recvmmsg and hands the datagrams
// out one per ReadFrom, as Pion's read loop asks for them: one system call
// and one wake-up of the loop per burst instead of per datagram. It has a
// single reader (the loop) and allocates nothing per datagram: the
// buffers are its own, and the source addresses it returns come from a
// bounded cache, which Pion only reads.
type batchReader struct {
	rc    syscall.RawConn
	batch mmsgBatch
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
	r.batch.init()
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
	p, ap := r.batch.datagram(r.next)
	r.next++
	return copy(b, p), ap, r.addrs.get(ap), nil
}

// fill waits for the socket to be readable and takes what is queued.
func (r *batchReader) fill() error {
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
	n, errno := r.batch.recv(fd)
	switch errno {
	case unix.EAGAIN:
		return false
	case 0:
		r.got, r.err = n, nil
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
