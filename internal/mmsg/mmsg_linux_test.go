//go:build linux && (amd64 || arm64)

package mmsg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/media-service/media-service/internal/testenv"
)

// listen is a UDP socket on addr; an address this machine lacks (IPv6
// loopback in some containers) skips the test locally and fails it under
// CI=true.
func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		testenv.Missing(t, "no %s socket on %s: %v", network, addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

func message(p string, to net.Addr) ipv4.Message {
	return ipv4.Message{Buffers: [][]byte{[]byte(p)}, Addr: to}
}

// TestSenderFamilies sends a batch from an IPv4 socket and from a
// dual-stack one (bound to every address), to IPv4 and IPv6 receivers:
// every datagram arrives, in order, from the sender's port, and a
// receiver on the same sockets reads it with the source Go's net gives.
func TestSenderFamilies(t *testing.T) {
	for _, tt := range []struct{ network, from, to string }{
		{"udp4", "127.0.0.1:0", "127.0.0.1:0"},
		{"udp", "[::]:0", "127.0.0.1:0"},
		{"udp", "[::]:0", "[::1]:0"},
	} {
		t.Run(tt.from+"->"+tt.to, func(t *testing.T) {
			out := listen(t, tt.network, tt.from)
			in := listen(t, "udp", tt.to)
			s := NewSender(out)
			if s == nil {
				t.Fatal("NewSender = nil; want a sender on Linux")
			}
			const n = MaxBatch
			msgs := make([]ipv4.Message, n)
			for i := range msgs {
				msgs[i] = message(fmt.Sprintf("datagram %02d", i), in.LocalAddr())
			}
			if k, err := s.Send(msgs); k != n || err != nil {
				t.Fatalf("Send = %d, %v; want %d, nil", k, err, n)
			}
			r := NewReceiver(in)
			_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			for i := range n {
				k, from, err := r.ReadFromAddrPort(buf)
				if want := fmt.Sprintf("datagram %02d", i); err != nil || string(buf[:k]) != want {
					t.Fatalf("read %d: %q, %v; want %q", i, buf[:k], err, want)
				}
				if from.Port() != uint16(out.LocalAddr().(*net.UDPAddr).Port) {
					t.Fatalf("read %d from %v; want the sender's port %d", i, from, out.LocalAddr().(*net.UDPAddr).Port)
				}
			}
		})
	}
}

// TestReceiverSourceAsNet checks the source a Receiver reports against
// net.UDPConn's for the same sender: an IPv4 sender to a dual-stack
// socket comes mapped, as Go's net reports it, and Pion's mux keys its
// connections by what it reads.
func TestReceiverSourceAsNet(t *testing.T) {
	for _, tt := range []struct{ in, out string }{
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"[::]:0", "127.0.0.1:0"},
		{"[::]:0", "[::1]:0"},
	} {
		t.Run(tt.out+"->"+tt.in, func(t *testing.T) {
			in := listen(t, "udp", tt.in)
			out := listen(t, "udp", tt.out)
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(in.LocalAddr().(*net.UDPAddr).Port))
			if netip.MustParseAddrPort(tt.out).Addr().Is6() {
				to = netip.AddrPortFrom(netip.IPv6Loopback(), to.Port())
			}
			_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			if _, err := out.WriteToUDPAddrPort([]byte("by net"), to); err != nil {
				t.Fatal(err)
			}
			_, want, err := in.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := out.WriteToUDPAddrPort([]byte("by raw"), to); err != nil {
				t.Fatal(err)
			}
			n, got, err := NewReceiver(in).ReadFromAddrPort(buf)
			if err != nil || string(buf[:n]) != "by raw" || got != want {
				t.Fatalf("ReadFromAddrPort = %q from %v, %v; want %q from %v (net's)", buf[:n], got, err, "by raw", want)
			}
		})
	}
}

// A datagram longer than the buffer is cut to it, as a net.UDPConn's
// read cuts it, and the next read gets the next datagram.
func TestReceiverCutsALongDatagram(t *testing.T) {
	in, out := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	for _, p := range []string{"longer than four", "next"} {
		if _, err := out.WriteTo([]byte(p), in.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, buf := NewReceiver(in), make([]byte, 4)
	for _, want := range []string{"long", "next"} {
		if n, _, err := r.ReadFromAddrPort(buf); err != nil || string(buf[:n]) != want {
			t.Fatalf("ReadFromAddrPort = %q, %v; want %q", buf[:n], err, want)
		}
	}
}

// A read waits in Go's netpoller: a deadline ends it with a timeout, and
// closing the socket with net.ErrClosed, as they end a net.UDPConn's.
func TestReceiverWaitEnds(t *testing.T) {
	in := listen(t, "udp4", "127.0.0.1:0")
	r, buf := NewReceiver(in), make([]byte, 16)
	_ = in.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, _, err := r.ReadFromAddrPort(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !os.IsTimeout(err) {
		t.Fatalf("read past the deadline = %v; want a timeout", err)
	}
	_ = in.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := r.ReadFromAddrPort(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // most likely waiting by now; either way Close ends it
	in.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed socket = %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not end when its socket was closed")
	}
}

// A destination the kernel refuses first fails the call with its error,
// having sent nothing; one later in the batch ends the batch before it.
func TestSenderRefusedDestination(t *testing.T) {
	out, in := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	s := NewSender(out)
	port0 := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)} // port 0: EINVAL
	if k, err := s.Send([]ipv4.Message{message("refused", port0), message("after", in.LocalAddr())}); k != 0 || err == nil {
		t.Fatalf("Send with a refused first destination = %d, %v; want 0 and its error", k, err)
	}
	v6 := &net.UDPAddr{IP: net.IPv6loopback, Port: 9}
	k, err := s.Send([]ipv4.Message{message("sent", in.LocalAddr()), message("v6", v6)})
	if k != 1 || err != nil {
		t.Fatalf("Send with an IPv6 destination second on an IPv4 socket = %d, %v; want 1, nil", k, err)
	}
	zoned := &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 9, Zone: "lo"}
	if k, err := s.Send([]ipv4.Message{message("zoned", zoned)}); k != 0 || err == nil {
		t.Fatalf("Send to a zoned address = %d, %v; want 0 and an error", k, err)
	}
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	if n, _, err := in.ReadFrom(buf); err != nil || string(buf[:n]) != "sent" {
		t.Fatalf("received %q, %v; want %q", buf[:n], err, "sent")
	}
}

// Sending a batch and reading a datagram allocate nothing: both run per
// forwarded packet.
func TestSendAndReceiveDoNotAllocate(t *testing.T) {
	out, in := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	s, r := NewSender(out), NewReceiver(in)
	msgs := []ipv4.Message{message("ping", in.LocalAddr())}
	buf := make([]byte, 16)
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	allocs := testing.AllocsPerRun(100, func() {
		if k, err := s.Send(msgs); k != 1 || err != nil {
			t.Fatalf("Send = %d, %v", k, err)
		}
		if _, _, err := r.ReadFromAddrPort(buf); err != nil {
			t.Fatalf("ReadFromAddrPort = %v", err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per send and read = %v; want 0", allocs)
	}
}

// TestSingleFamilies sends single datagrams from an IPv4 socket and from
// a dual-stack one to IPv4 and IPv6 receivers, with a destination given
// as net gives it (IPv4 mapped on a dual-stack socket) or plain: each
// arrives whole, from the sender's port.
func TestSingleFamilies(t *testing.T) {
	for _, tt := range []struct {
		network, from, to string
		mapped            bool
	}{
		{"udp4", "127.0.0.1:0", "127.0.0.1:0", false},
		{"udp4", "127.0.0.1:0", "127.0.0.1:0", true},
		{"udp", "[::]:0", "127.0.0.1:0", false},
		{"udp", "[::]:0", "127.0.0.1:0", true},
		{"udp", "[::]:0", "[::1]:0", false},
	} {
		t.Run(fmt.Sprintf("%s->%s mapped=%v", tt.from, tt.to, tt.mapped), func(t *testing.T) {
			out := listen(t, tt.network, tt.from)
			in := listen(t, "udp", tt.to)
			s := NewSingle(out)
			if s == nil {
				t.Fatal("NewSingle = nil; want a sender on Linux")
			}
			to := in.LocalAddr().(*net.UDPAddr).AddrPort()
			if tt.mapped {
				to = netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())
			}
			for i := range 3 {
				p := fmt.Sprintf("datagram %d", i)
				if n, ok, err := s.WriteToAddrPort([]byte(p), to); n != len(p) || !ok || err != nil {
					t.Fatalf("WriteToAddrPort(%v) = %d, %v, %v; want %d, true, nil", to, n, ok, err, len(p))
				}
			}
			_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			for i := range 3 {
				k, from, err := in.ReadFromUDPAddrPort(buf)
				if want := fmt.Sprintf("datagram %d", i); err != nil || string(buf[:k]) != want {
					t.Fatalf("read %d: %q, %v; want %q", i, buf[:k], err, want)
				}
				if from.Port() != uint16(out.LocalAddr().(*net.UDPAddr).Port) {
					t.Fatalf("read %d from %v; want the sender's port", i, from)
				}
			}
		})
	}
}

// A destination the sender cannot put (a zone; IPv6 on an IPv4 socket)
// is left to net (ok false, nothing sent); one the kernel refuses gets
// an error shaped as net's; a closed socket's error is net.ErrClosed.
func TestSingleRefusals(t *testing.T) {
	out := listen(t, "udp4", "127.0.0.1:0")
	s := NewSingle(out)
	for _, ap := range []netip.AddrPort{
		netip.MustParseAddrPort("[fe80::1%lo]:9"),
		netip.MustParseAddrPort("[::1]:9"),
	} {
		if n, ok, err := s.WriteToAddrPort([]byte("x"), ap); n != 0 || ok || err != nil {
			t.Errorf("WriteToAddrPort(%v) = %d, %v, %v; want 0, false, nil", ap, n, ok, err)
		}
	}
	port0 := netip.MustParseAddrPort("127.0.0.1:0")
	_, ok, err := s.WriteToAddrPort([]byte("x"), port0)
	_, netErr := out.WriteToUDPAddrPort([]byte("x"), port0)
	var op *net.OpError
	if !ok || !errors.As(err, &op) || !errors.Is(err, errors.Unwrap(errors.Unwrap(netErr))) {
		t.Errorf("WriteToAddrPort(%v) = %v, %v; want ok and an OpError of net's errno (%v)", port0, ok, err, netErr)
	}
	_ = out.Close()
	if _, ok, err := s.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); !ok || !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteToAddrPort on a closed socket = %v, %v; want ok, net.ErrClosed", ok, err)
	}
}

// A single datagram's send allocates nothing once the pool holds its
// state (the race detector's sync.Pool drops Puts: skipped there).
func TestSingleDoesNotAllocate(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("sync.Pool drops Puts under -race")
	}
	out, in := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	s := NewSingle(out)
	to := in.LocalAddr().(*net.UDPAddr).AddrPort()
	p := []byte("ping")
	buf := make([]byte, 16)
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok, err := s.WriteToAddrPort(p, to); !ok || err != nil {
			t.Fatalf("WriteToAddrPort = %v, %v", ok, err)
		}
		if _, _, err := in.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("read: %v", err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per send = %v; want 0", allocs)
	}
}
