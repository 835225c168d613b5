//go:build linux && (amd64 || arm64)

package turn

import (
	"encoding/binary"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mmsgSend sends a batchWriter's queue with one sendmmsg, made as a raw
// system call (see rawSyscall6; the socket is non-blocking, and a full
// send buffer waits in Go's netpoller as any write does). x/net's
// WriteBatch goes through syscall.Syscall, which wakes the runtime's
// sysmon thread whenever the process was idle: the relay loop sends a
// batch per round, and at its rates nearly every round found it idle.
// Only the writer that is sending uses it.
type mmsgSend struct {
	rc    syscall.RawConn
	v6    bool // an AF_INET6 socket: IPv4 destinations are sent mapped
	hdrs  [sendBatch]mmsghdr
	names [sendBatch]unix.RawSockaddrInet6
	iovs  [sendBatch]unix.Iovec
	call  func(fd uintptr) bool // sendmmsg as a value made once

	n, sent int        // datagrams in hdrs; sent by the last call
	errno   unix.Errno // of the last call
}

// newMmsgSend sends on c, or returns nil when it cannot (then x/net does).
func newMmsgSend(c *net.UDPConn) *mmsgSend {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	m := &mmsgSend{rc: rc}
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
	}); err != nil || family < 0 {
		return nil
	}
	m.v6 = family == unix.AF_INET6
	m.call = m.sendmmsg
	return m
}

// send sends msgs, each one buffer to a *net.UDPAddr, and returns how
// many the kernel took: fewer when one fails, whose error it returns if
// it is the first.
func (m *mmsgSend) send(msgs []ipv4.Message) (int, error) {
	m.n = 0
	for i := range msgs {
		ua, ok := msgs[i].Addr.(*net.UDPAddr)
		if !ok || !m.putName(i, ua) {
			break // sent as far as here; the caller skips this one
		}
		b := msgs[i].Buffers[0]
		m.iovs[i].Base = unsafe.SliceData(b)
		m.iovs[i].SetLen(len(b))
		h := &m.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
		m.n++
	}
	if m.n == 0 {
		return 0, unix.EAFNOSUPPORT
	}
	if err := m.rc.Write(m.call); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, m.errno
	}
	return m.sent, nil
}

// putName writes ua as the i-th destination in the socket's family.
func (m *mmsgSend) putName(i int, ua *net.UDPAddr) bool {
	sa, h := &m.names[i], &m.hdrs[i].hdr
	ip4 := ua.IP.To4()
	switch {
	case !m.v6 && ip4 != nil:
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*in4 = unix.RawSockaddrInet4{Family: unix.AF_INET}
		copy(in4.Addr[:], ip4)
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&in4.Port))[:], uint16(ua.Port))
		h.Namelen = unix.SizeofSockaddrInet4
	case m.v6 && ua.IP.To16() != nil:
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6}
		copy(sa.Addr[:], ua.IP.To16())
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], uint16(ua.Port))
		h.Namelen = unix.SizeofSockaddrInet6
	default:
		return false
	}
	return true
}

// sendmmsg is the RawConn.Write callback: false asks to wait until the
// socket is writable and try again.
func (m *mmsgSend) sendmmsg(fd uintptr) bool {
	for {
		n, _, errno := rawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(m.n), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		m.sent, m.errno = int(n), errno
		return true
	}
}
