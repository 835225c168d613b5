//go:build linux && (amd64 || arm64)

package turn

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

// TestBatchReader sends more datagrams than one batch holds and checks
// that each is read once, in order, with its source and length, that a
// datagram over the reader's buffer is cut to it, and that the socket's
// close ends the reads.
func TestBatchReader(t *testing.T) {
	c, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(1 << 20)
	r := newBatchReader(c)
	sender := echoSocket(t)
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	const count = recvBatch + 8
	for i := range count {
		if _, err := sender.WriteToUDPAddrPort([]byte(fmt.Sprintf("d%d", i)), to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sender.WriteToUDPAddrPort(make([]byte, recvBuffer+100), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3000)
	for i := range count {
		n, from, err := r.ReadFrom(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("d%d", i) || from.String() != sender.LocalAddr().String() {
			t.Fatalf("ReadFrom %d = %q from %v, %v; want %q from %s", i, buf[:n], from, err, fmt.Sprintf("d%d", i), sender.LocalAddr())
		}
	}
	if n, _, err := r.ReadFrom(buf); err != nil || n != recvBuffer {
		t.Errorf("ReadFrom of %d bytes = %d, %v; want %d (cut to the buffer)", recvBuffer+100, n, err, recvBuffer)
	}
	c.Close()
	if _, _, err := r.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Close = %v; want net.ErrClosed", err)
	}
}

// TestBatchReaderNoAllocation checks that reading a datagram allocates
// nothing once its source is known.
func TestBatchReaderNoAllocation(t *testing.T) {
	c, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := newBatchReader(c)
	sender := echoSocket(t)
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	p, buf := make([]byte, 160), make([]byte, 1600)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := sender.WriteToUDPAddrPort(p, to); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per datagram read = %v; want 0", allocs)
	}
}
