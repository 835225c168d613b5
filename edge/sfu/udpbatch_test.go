//go:build linux

package sfu

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/handoff"
	"github.com/media-service/media-service/internal/testenv"
)

// udpPeer is a receiving socket on 127.0.0.1.
func udpPeer(t *testing.T) *net.UDPConn {
	t.Helper()
	return udpPeerOn(t, "udp4", net.IPv4(127, 0, 0, 1))
}

// udpPeerOn is a receiving socket on ip. A machine with no such address
// (IPv6 loopback in some containers) skips the test locally and fails it
// under CI=true, so CI cannot pass the dual-stack case without running it.
func udpPeerOn(t *testing.T, network string, ip net.IP) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		if ip.To4() == nil {
			testenv.Missing(t, "no %s to listen on: %v", ip, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads n datagrams from c and returns them in arrival order.
func receive(t *testing.T, c *net.UDPConn, n int) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < n {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), n, err)
		}
		got = append(got, bytes.Clone(buf[:k]))
	}
	return got
}

func newTestBatchConn(t *testing.T, laddr string) (*batchConn, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", laddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var errs atomic.Int64
	return newBatchConn(pc.(*net.UDPConn), func(n int) { errs.Add(int64(n)) }), &errs
}

func TestBatchConnSendsHeldWritesInOrder(t *testing.T) {
	tests := []struct {
		name    string
		laddr   string
		network string // of the receiver
		peer    net.IP
	}{
		{"IPv4 socket", "127.0.0.1:0", "udp4", net.IPv4(127, 0, 0, 1)},
		{"dual-stack socket, IPv4 receiver", ":0", "udp4", net.IPv4(127, 0, 0, 1)},
		{"dual-stack socket, IPv6 receiver", ":0", "udp6", net.IPv6loopback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, errs := newTestBatchConn(t, tt.laddr)
			if b.batch == nil {
				t.Fatalf("no batching on %s; want it on Linux", b.LocalAddr())
			}
			peer := udpPeerOn(t, tt.network, tt.peer)
			to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			const n = batchSize*2 + 7 // fills the batch twice: sent before the release
			b.hold()
			for i := range n {
				msg := fmt.Appendf(nil, "datagram %03d", i)
				if k, err := b.WriteToAddrPort(msg, to); err != nil || k != len(msg) {
					t.Fatalf("WriteToAddrPort(%d) = %d, %v; want %d, nil", i, k, err, len(msg))
				}
			}
			b.release()
			expectNumbered(t, peer, n, errs)
		})
	}
}

func TestBatchConnWritesAtOnceWhenNotHeld(t *testing.T) {
	b, _ := newTestBatchConn(t, "127.0.0.1:0")
	peer := udpPeer(t)
	if _, err := b.WriteToAddrPort([]byte("now"), peer.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, peer, 1); string(got[0]) != "now" {
		t.Errorf("received %q; want %q", got[0], "now")
	}
}

// A destination the kernel refuses costs only its own datagram: the ones
// around it in the batch are sent, and it is counted.
func TestBatchConnSkipsARefusedDatagram(t *testing.T) {
	b, errs := newTestBatchConn(t, "127.0.0.1:0")
	peer := udpPeer(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	refused := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0) // port 0: EINVAL
	b.hold()
	for _, w := range []struct {
		msg string
		to  netip.AddrPort
	}{{"first", to}, {"refused", refused}, {"second", to}} {
		if _, err := b.WriteToAddrPort([]byte(w.msg), w.to); err != nil {
			t.Fatalf("WriteToAddrPort(%q) while held = %v; want nil", w.msg, err)
		}
	}
	b.release()
	got := receive(t, peer, 2)
	if string(got[0]) != "first" || string(got[1]) != "second" {
		t.Errorf("received %q, %q; want first, second", got[0], got[1])
	}
	if errs.Load() != 1 {
		t.Errorf("send errors = %d; want 1", errs.Load())
	}
}

// A writer that fills the batch's own buffer (reserve, then commit or
// cancel) takes its place among the held writes: what it commits leaves
// in order with them, what it cancels never leaves, and a full batch is
// sent before a buffer is lent. Nothing is lent while no fan-out holds
// the writes, nor for an address a TURN allocation of this instance holds.
func TestBatchConnLendsItsBuffer(t *testing.T) {
	b, errs := newTestBatchConn(t, "127.0.0.1:0")
	peer := udpPeer(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if buf := b.reserve(to); buf != nil {
		t.Fatal("reserve lent a buffer with no fan-out under way")
	}
	relayed := netip.MustParseAddrPort("127.0.0.1:9")
	b.routes.Attach(relayed, handoff.Route{Conn: handoff.NewFedConn(4), Peer: to})
	const n = batchSize*2 + 7
	b.hold()
	if buf := b.reserve(relayed); buf != nil {
		b.cancel()
		t.Fatal("reserve lent a buffer for a relayed address; its datagrams go to the allocation")
	}
	for i := range n {
		msg := fmt.Appendf(nil, "datagram %03d", i)
		switch i % 3 {
		case 0:
			if _, err := b.WriteToAddrPort(msg, to); err != nil {
				t.Fatal(err)
			}
		case 1:
			buf := b.reserve(to)
			if buf == nil {
				t.Fatalf("reserve(%d) lent nothing while the writes are held", i)
			}
			b.commit(copy(buf, msg), to)
		case 2:
			buf := b.reserve(to)
			if buf == nil {
				t.Fatalf("reserve(%d) lent nothing while the writes are held", i)
			}
			copy(buf, "cancelled")
			b.cancel()
			if _, err := b.WriteToAddrPort(msg, to); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.release()
	expectNumbered(t, peer, n, errs)
}

// expectNumbered reads n datagrams from peer and fails unless they are
// "datagram 000" onwards in order, with no send error counted.
func expectNumbered(t *testing.T, peer *net.UDPConn, n int, errs *atomic.Int64) {
	t.Helper()
	for i, d := range receive(t, peer, n) {
		if want := fmt.Sprintf("datagram %03d", i); string(d) != want {
			t.Fatalf("datagram %d = %q; want %q", i, d, want)
		}
	}
	if errs.Load() != 0 {
		t.Errorf("send errors = %d; want 0", errs.Load())
	}
}
