package handoff

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen is a UDP socket on loopback, closed at the end of the test.
func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// datagram is what one Read returned.
type datagram struct {
	data   string
	from   netip.AddrPort
	handed bool
	err    error
}

// reader reads c on a goroutine of its own until it fails, and returns
// what it read on a channel that is closed after the failure.
func reader(t *testing.T, c *Conn) <-chan datagram {
	t.Helper()
	out := make(chan datagram, 64)
	go func() {
		defer close(out)
		buf := make([]byte, MaxPacket)
		for {
			n, from, handed, err := c.Read(buf)
			out <- datagram{string(buf[:n]), from, handed, err}
			if err != nil {
				return
			}
		}
	}()
	return out
}

// waitBlocked polls until c's reader is in its kernel read.
func waitBlocked(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		blocked := c.blocked
		c.mu.Unlock()
		if blocked {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("reader not blocked within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func next(t *testing.T, ch <-chan datagram) datagram {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no datagram within 10 s")
		return datagram{}
	}
}

// TestConnMergesKernelAndDelivered checks that a reader blocked in the
// kernel is woken by a delivery, reads it with its claimed source, and
// keeps reading kernel datagrams after it, interleaved as they come.
func TestConnMergesKernelAndDelivered(t *testing.T) {
	c := NewConn(listen(t), 8)
	ch := reader(t, c)
	sender := listen(t)
	relayed := netip.MustParseAddrPort("127.0.0.1:40000")
	to := c.LocalAddr().(*net.UDPAddr)

	for round := range 3 {
		// The reader is in (or entering) its kernel read with nothing
		// queued: the delivery must wake it.
		waitBlocked(t, c)
		if !c.Deliver([]byte("handed"), relayed) {
			t.Fatal("Deliver = false; want true")
		}
		if d := next(t, ch); d != (datagram{"handed", relayed, true, nil}) {
			t.Fatalf("round %d: Read = %+v; want the handed datagram from %s", round, d, relayed)
		}
		if _, err := sender.WriteToUDP([]byte("kernel"), to); err != nil {
			t.Fatal(err)
		}
		want := datagram{"kernel", sender.LocalAddr().(*net.UDPAddr).AddrPort(), false, nil}
		if d := next(t, ch); d != want {
			t.Fatalf("round %d: Read = %+v; want %+v", round, d, want)
		}
	}
	c.Close()
	if d := next(t, ch); !errors.Is(d.err, net.ErrClosed) {
		t.Fatalf("Read after Close = %+v; want net.ErrClosed", d)
	}
	if c.Deliver([]byte("late"), relayed) {
		t.Error("Deliver after Close = true; want false")
	}
}

// TestConnQueueBound checks that deliveries beyond the queue are refused
// while the reader is away, and that those queued are read in order.
func TestConnQueueBound(t *testing.T) {
	c := NewConn(listen(t), 2)
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	for i, p := range []string{"a", "b", "c"} {
		if got, want := c.Deliver([]byte(p), from), i < 2; got != want {
			t.Errorf("Deliver(%q) = %v; want %v", p, got, want)
		}
	}
	if c.Deliver(make([]byte, MaxPacket+1), from) {
		t.Error("Deliver of MaxPacket+1 bytes = true; want false")
	}
	buf := make([]byte, 1)
	for _, want := range []string{"a", "b"} {
		n, got, handed, err := c.Read(buf)
		if err != nil || !handed || got != from || string(buf[:n]) != want {
			t.Errorf("Read = %q, %s, %v, %v; want %q, %s, true, nil", buf[:n], got, handed, err, want, from)
		}
	}
}

// TestFedConn checks a fed Conn: fed and delivered datagrams are read in
// the order they came, each marked as what it is, within the queue's
// bound; a reader waiting for one is woken by either; Close ends the
// wait; and nothing is queued after it.
func TestFedConn(t *testing.T) {
	c := NewFedConn(3)
	peer, relayed := netip.MustParseAddrPort("127.0.0.1:9"), netip.MustParseAddrPort("127.0.0.1:40000")
	if !c.Feed([]byte("kernel"), peer) || !c.Deliver([]byte("handed"), relayed) || !c.Feed([]byte("again"), peer) {
		t.Fatal("Feed or Deliver refused within the bound; want queued")
	}
	if c.Feed([]byte("over"), peer) || c.Deliver([]byte("over"), relayed) {
		t.Error("Feed or Deliver beyond the bound = true; want false")
	}
	ch := reader(t, c)
	for _, want := range []datagram{{"kernel", peer, false, nil}, {"handed", relayed, true, nil}, {"again", peer, false, nil}} {
		if d := next(t, ch); d != want {
			t.Fatalf("Read = %+v; want %+v", d, want)
		}
	}
	for _, want := range []datagram{{"late feed", peer, false, nil}, {"late delivery", relayed, true, nil}} {
		// The reader waits for a token by now, or soon: either wakes it.
		if want.handed {
			c.Deliver([]byte(want.data), want.from)
		} else {
			c.Feed([]byte(want.data), want.from)
		}
		if d := next(t, ch); d != want {
			t.Fatalf("Read = %+v; want %+v", d, want)
		}
	}
	c.Close()
	if d := next(t, ch); !errors.Is(d.err, net.ErrClosed) {
		t.Fatalf("Read after Close = %+v; want net.ErrClosed", d)
	}
	if c.Feed([]byte("x"), peer) || c.Deliver([]byte("x"), relayed) {
		t.Error("Feed or Deliver after Close = true; want false")
	}
}

// TestConnTap checks that the tap sees every delivered datagram, with
// its claimed source, before it is queued: what it takes is never read,
// what it leaves is read as before; fed datagrams do not pass it.
func TestConnTap(t *testing.T) {
	c := NewFedConn(4)
	peer, relayed := netip.MustParseAddrPort("127.0.0.1:9"), netip.MustParseAddrPort("127.0.0.1:40000")
	var seen []string
	c.SetTap(func(p []byte, from netip.AddrPort) bool {
		seen = append(seen, string(p)+" from "+from.String())
		return strings.HasPrefix(string(p), "take")
	})
	if !c.Deliver([]byte("take 1"), relayed) || !c.Deliver([]byte("leave"), relayed) || !c.Feed([]byte("fed take"), peer) || !c.Deliver([]byte("take 2"), relayed) {
		t.Fatal("Deliver or Feed = false; want true")
	}
	if want := []string{"take 1 from " + relayed.String(), "leave from " + relayed.String(), "take 2 from " + relayed.String()}; !slices.Equal(seen, want) {
		t.Errorf("tap saw %q; want %q", seen, want)
	}
	ch := reader(t, c)
	for _, want := range []datagram{{"leave", relayed, true, nil}, {"fed take", peer, false, nil}} {
		if d := next(t, ch); d != want {
			t.Fatalf("Read = %+v; want %+v", d, want)
		}
	}
	c.Close()
	if d := next(t, ch); !errors.Is(d.err, net.ErrClosed) {
		t.Fatalf("Read after Close = %+v; want net.ErrClosed (nothing taken was queued)", d)
	}
}

// TestConnNoAllocation checks that a delivery and its read allocate
// nothing once the queue's slots exist, and a fed datagram neither.
func TestConnNoAllocation(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    *Conn
		put  func(*Conn, []byte, netip.AddrPort) bool
	}{
		{"delivered", NewConn(listen(t), 4), (*Conn).Deliver},
		{"fed", NewFedConn(4), (*Conn).Feed},
	} {
		from := netip.MustParseAddrPort("127.0.0.1:40000")
		p, buf := make([]byte, 1200), make([]byte, MaxPacket)
		allocs := testing.AllocsPerRun(1000, func() {
			tt.put(tt.c, p, from)
			if _, _, err := tt.c.ReadFromAddrPort(buf); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("allocations per %s datagram = %v; want 0", tt.name, allocs)
		}
	}
}

// TestSwitchRoutes checks that Send hands datagrams to the attached
// route only, as from its peer, and that a stale Detach keeps a newer
// route of the same relayed address.
func TestSwitchRoutes(t *testing.T) {
	sw := NewSwitch(NewConn(listen(t), 4))
	relayed := netip.MustParseAddrPort("127.0.0.1:40000")
	peer := netip.MustParseAddrPort("127.0.0.1:7882")
	if sw.Send([]byte("x"), relayed) {
		t.Fatal("Send without a route = true; want false")
	}
	old, cur := NewConn(listen(t), 1), NewConn(listen(t), 1)
	sw.Attach(relayed, Route{Conn: old, Peer: peer})
	sw.Attach(relayed, Route{Conn: cur, Peer: peer})
	sw.Detach(relayed, old)
	if !sw.Send([]byte("one"), netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000")) {
		t.Fatal("Send to the mapped relayed address = false; want true")
	}
	if !sw.Send([]byte("two"), relayed) || sw.Dropped() != 1 {
		t.Errorf("second Send over a 1-slot queue: Dropped = %d; want 1", sw.Dropped())
	}
	buf := make([]byte, 16)
	n, from, handed, err := cur.Read(buf)
	if err != nil || !handed || from != peer || string(buf[:n]) != "one" {
		t.Errorf("Read = %q, %s, %v, %v; want \"one\", %s, true, nil", buf[:n], from, handed, err, peer)
	}
	sw.Detach(relayed, cur)
	if sw.Send([]byte("x"), relayed) {
		t.Error("Send after Detach = true; want false")
	}
}

// takeSender takes the datagrams that start with "fast", as a relay takes
// those on a bound channel, and records them with the peer they came as.
type takeSender struct {
	took []string
	from []netip.AddrPort
}

func (s *takeSender) Send(p []byte, from netip.AddrPort) bool {
	if !strings.HasPrefix(string(p), "fast") {
		return false
	}
	s.took, s.from = append(s.took, string(p)), append(s.from, from)
	return true
}

// countBatch counts Holds and Releases.
type countBatch struct{ holds, releases int }

func (b *countBatch) Hold()    { b.holds++ }
func (b *countBatch) Release() { b.releases++ }

// TestSwitchSender checks that a route's Sender gets the datagrams it
// takes, as from the route's peer, and the allocation's Conn the rest;
// and that Hold and Release reach the batch once one is set.
func TestSwitchSender(t *testing.T) {
	sw := NewSwitch(NewConn(listen(t), 4))
	relayed := netip.MustParseAddrPort("127.0.0.1:40000")
	peer := netip.MustParseAddrPort("127.0.0.1:7882")
	sender, conn := &takeSender{}, NewConn(listen(t), 4)
	sw.Attach(relayed, Route{Conn: conn, Peer: peer, Sender: sender})
	for _, p := range []string{"fast 1", "slow", "fast 2"} {
		if !sw.Send([]byte(p), relayed) {
			t.Fatalf("Send(%q) = false; want true", p)
		}
	}
	if want := []string{"fast 1", "fast 2"}; !slices.Equal(sender.took, want) || sender.from[0] != peer {
		t.Errorf("Sender took %q from %v; want %q from %s", sender.took, sender.from, want, peer)
	}
	buf := make([]byte, 16)
	if n, from, handed, err := conn.Read(buf); err != nil || !handed || from != peer || string(buf[:n]) != "slow" {
		t.Errorf("Conn Read = %q, %s, %v, %v; want \"slow\", %s, true, nil", buf[:n], from, handed, err, peer)
	}
	sw.Hold() // no batch yet: nothing to tell
	sw.Release()
	b := &countBatch{}
	sw.SetBatch(b)
	sw.Hold()
	sw.Release()
	if b.holds != 1 || b.releases != 1 {
		t.Errorf("batch saw %d Holds and %d Releases; want 1 and 1", b.holds, b.releases)
	}
}
