package turn

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/testenv"
)

// TestBatchWriterConcurrent has many goroutines write through one
// batchWriter at once, as allocations do after a fan-out, and checks that
// every datagram arrives once and whole, and that the writer is idle
// after.
func TestBatchWriterConcurrent(t *testing.T) {
	out, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	_ = in.SetReadBuffer(4 << 20)
	w := newBatchWriter(out)
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := []byte(fmt.Sprintf("%d/%d", g, i))
				if n, err := w.WriteTo(p, in.LocalAddr()); err != nil || n != len(p) {
					t.Errorf("WriteTo = %d, %v; want %d, nil", n, err, len(p))
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	buf := make([]byte, 64)
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(seen) < writers*each {
		n, from, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(seen), writers*each, err)
		}
		if seen[string(buf[:n])] || from.Port() != uint16(out.LocalAddr().(*net.UDPAddr).Port) {
			t.Fatalf("datagram %q from %s: a duplicate, or not from the writer's socket", buf[:n], from)
		}
		seen[string(buf[:n])] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sending || w.queue.n != 0 {
		t.Errorf("after the writes: sending %v, %d queued; want idle and empty", w.sending, w.queue.n)
	}
}

// TestBatchWriterDoesNotAllocate checks that a write allocates nothing,
// sent at once or queued and sent in a batch.
func TestBatchWriterDoesNotAllocate(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("the race detector allocates in x/net's batch write")
	}
	// Silent sockets: AllocsPerRun counts every goroutine's allocations,
	// and an echoing socket's reader allocates each datagram's address.
	out, in := silentSocket(t), silentSocket(t)
	w := newBatchWriter(out)
	p, to := make([]byte, 164), in.LocalAddr()
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := w.WriteTo(p, to); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock() // as if a write were under way: the next one queues
		w.sending = true
		w.mu.Unlock()
		if _, err := w.WriteTo(p, to); err != nil {
			t.Fatal(err)
		}
		w.sendQueued()
	})
	if allocs != 0 {
		t.Errorf("allocations per two writes = %v; want 0", allocs)
	}
}

// TestBatchWriterHold checks that writes during a fan-out (between Hold
// and Release) wait for its Release, then all leave; that ChannelData is
// framed on the way; and that a write after it leaves at once.
func TestBatchWriterHold(t *testing.T) {
	out, in := silentSocket(t), silentSocket(t)
	w := newBatchWriter(out)
	to := in.LocalAddr().(*net.UDPAddr).AddrPort()
	w.Hold()
	const held = sendBatch + 3 // more than a batch: a full queue leaves at once
	for i := range held {
		w.writeChannelData(0x4000, []byte(fmt.Sprintf("%03d", i)), to)
	}
	w.mu.Lock()
	queued := w.queue.n
	w.mu.Unlock()
	if queued != held-sendBatch {
		t.Fatalf("queued during the hold = %d; want %d (the first full batch sent)", queued, held-sendBatch)
	}
	w.Release()
	buf := make([]byte, 64)
	for i := range held {
		_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		number, data, ok := parseChannelData(buf[:n])
		if want := fmt.Sprintf("%03d", i); !ok || number != 0x4000 || string(data) != want || n != 8 {
			t.Fatalf("datagram %d = %x; want ChannelData %q on 0x4000, padded to 8 bytes", i, buf[:n], want)
		}
	}
	if _, err := w.WriteTo([]byte("after"), in.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err := in.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "after" {
		t.Fatalf("after the release: read %q, %v; want \"after\"", buf[:n], err)
	}
	w.Release() // unmatched: harmless
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holds != 0 || w.sending || w.queue.n != 0 {
		t.Errorf("after: holds %d, sending %v, %d queued; want 0, false, 0", w.holds, w.sending, w.queue.n)
	}
}

// silentSocket is a UDP socket on loopback that the test reads itself.
func silentSocket(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(1 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestBatchWriterFamilies sends a held batch from an IPv4 socket and
// from a dual-stack IPv6 one (a listener bound to every address), to an
// IPv4 destination (mapped, from the IPv6 socket) and, from the IPv6
// socket, to an IPv6 one: each arrives from the writer's port.
func TestBatchWriterFamilies(t *testing.T) {
	for _, tt := range []struct{ network, from, to string }{
		{"udp4", "127.0.0.1:0", "127.0.0.1:0"},
		{"udp", "[::]:0", "127.0.0.1:0"},
		{"udp", "[::]:0", "[::1]:0"},
	} {
		t.Run(tt.from+"->"+tt.to, func(t *testing.T) {
			out, err := net.ListenPacket(tt.network, tt.from)
			if err != nil {
				t.Skipf("no %s socket here: %v", tt.from, err)
			}
			defer out.Close()
			in, err := net.ListenPacket("udp", tt.to)
			if err != nil {
				t.Skipf("no %s socket here: %v", tt.to, err)
			}
			defer in.Close()
			w := newBatchWriter(out.(*net.UDPConn))
			w.Hold()
			for _, p := range []string{"one", "two"} {
				if _, err := w.WriteTo([]byte(p), in.LocalAddr()); err != nil {
					t.Fatalf("WriteTo = %v", err)
				}
			}
			w.Release()
			buf := make([]byte, 16)
			_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
			for _, want := range []string{"one", "two"} {
				n, from, err := in.ReadFrom(buf)
				if err != nil || string(buf[:n]) != want || from.(*net.UDPAddr).Port != out.LocalAddr().(*net.UDPAddr).Port {
					t.Fatalf("read %q from %v, %v; want %q from port %d", buf[:n], from, err, want, out.LocalAddr().(*net.UDPAddr).Port)
				}
			}
		})
	}
}
