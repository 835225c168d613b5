package netlab

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/testenv"
)

// relayRig is a client and a target socket on loopback with a Relay
// between them.
type relayRig struct {
	relay          *Relay
	client, target *net.UDPConn
}

func newRelayRig(t *testing.T, seed uint64) *relayRig {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	rig := &relayRig{client: listen(), target: listen()}
	r, err := NewRelay("127.0.0.1:0", rig.target.LocalAddr().String(), seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rig.relay = r
	return rig
}

// up sends n packets of size bytes from the client to the relay.
func (rig *relayRig) up(t *testing.T, n, size int) {
	t.Helper()
	b := make([]byte, size)
	for range n {
		if _, err := rig.client.WriteToUDPAddrPort(b, rig.relay.Addr()); err != nil {
			t.Fatal(err)
		}
	}
}

// recv reads one packet within 10 s and returns its source and arrival.
func recv(t *testing.T, c *net.UDPConn) (netip.AddrPort, time.Time) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, relayPacket)
	_, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no packet: %v", err)
	}
	return from, time.Now()
}

// TestRelayForwardsAndRebinds: packets go both ways; after Rebind the
// target sees a new source port and its replies still reach the client.
func TestRelayForwardsAndRebinds(t *testing.T) {
	rig := newRelayRig(t, 1)
	rig.up(t, 1, 100)
	first, _ := recv(t, rig.target)
	rig.target.WriteToUDPAddrPort([]byte("back"), first)
	if from, _ := recv(t, rig.client); from != rig.relay.Addr() {
		t.Errorf("reply came from %s; want the relay's %s", from, rig.relay.Addr())
	}
	if err := rig.relay.Rebind(); err != nil {
		t.Fatal(err)
	}
	rig.up(t, 1, 100)
	second, _ := recv(t, rig.target)
	if second == first {
		t.Errorf("source after Rebind = %s; want a new port", second)
	}
	rig.target.WriteToUDPAddrPort([]byte("back"), second)
	recv(t, rig.client)
	// A forward is counted after its write returns, which may be after
	// the packet was read at the other end: poll.
	deadline := time.Now().Add(5 * time.Second)
	for s := rig.relay.Stats(); s.UpForwarded != 2 || s.DownForwarded != 2; s = rig.relay.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v; want 2 forwarded each way", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRelayFlows: each client address gets its own source port at the
// target, like behind a NAT, and replies go back to the right client.
func TestRelayFlows(t *testing.T) {
	rig := newRelayRig(t, 1)
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	rig.up(t, 1, 10)
	first, _ := recv(t, rig.target)
	other.WriteToUDPAddrPort([]byte("o"), rig.relay.Addr())
	second, _ := recv(t, rig.target)
	if first == second {
		t.Fatalf("two clients arrive from one address %s; want one each", first)
	}
	rig.target.WriteToUDPAddrPort([]byte("to-other"), second)
	other.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	if n, _, err := other.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "to-other" {
		t.Errorf("second client read %q, %v; want its reply", buf[:n], err)
	}
}

// TestRelayLoss: seeded loss drops about its share; what is not lost
// arrives, and every packet is counted once.
func TestRelayLoss(t *testing.T) {
	rig := newRelayRig(t, 42)
	if err := rig.relay.Impair(Impairment{Loss: 0.3}, Impairment{}); err != nil {
		t.Fatal(err)
	}
	const batches, batch = 10, 100 // batches, so no socket buffer overflows
	got := 0
	for i := 1; i <= batches; i++ {
		rig.up(t, batch, 100)
		waitFor(t, func() bool { s := rig.relay.Stats(); return s.UpForwarded+s.UpLost >= int64(i*batch) })
		got += count(rig.target, int(rig.relay.Stats().UpForwarded)-got)
	}
	s := rig.relay.Stats()
	if s.UpForwarded+s.UpLost != batches*batch || s.UpLost < 200 || s.UpLost > 400 || int64(got) != s.UpForwarded {
		t.Errorf("stats = %+v, %d received; want %d in all, 200 to 400 lost, the rest received", s, got, batches*batch)
	}
}

// TestRelayDelayAndRate: a packet is held at least the delay; at 800
// kbit/s, 40 packets of 1000 bytes take at least 0.39 s to leave; beyond
// the queue limit packets are dropped, not queued.
func TestRelayDelayAndRate(t *testing.T) {
	rig := newRelayRig(t, 1)
	if err := rig.relay.Impair(Impairment{}, Impairment{Delay: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	rig.up(t, 1, 10)
	from, _ := recv(t, rig.target)
	start := time.Now()
	rig.target.WriteToUDPAddrPort([]byte("x"), from)
	if _, at := recv(t, rig.client); at.Sub(start) < 200*time.Millisecond {
		t.Errorf("delayed packet arrived after %s; want at least 200ms", at.Sub(start))
	}

	if err := rig.relay.Impair(Impairment{RateKbit: 800, QueueBytes: 20_000}, Impairment{}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	rig.up(t, 40, 1000)
	var last time.Time
	waitFor(t, func() bool { s := rig.relay.Stats(); return s.UpForwarded+s.UpOverflow >= 41 })
	s := rig.relay.Stats()
	for range s.UpForwarded - 1 {
		_, last = recv(t, rig.target)
	}
	// 20 000 bytes of queue hold 20 packets; the rest overflow unless the
	// limiter sent some meanwhile (a slow machine sends slower).
	if s.UpOverflow < 10 || s.UpForwarded-1+s.UpOverflow != 40 {
		t.Errorf("stats = %+v; want 40 in all, at least 10 overflowed", s)
	}
	if want := time.Duration(s.UpForwarded-2) * 10 * time.Millisecond; last.Sub(start) < want {
		t.Errorf("%d packets at 800 kbit/s left within %s; want at least %s", s.UpForwarded-1, last.Sub(start), want)
	}
	if err := rig.relay.Impair(Impairment{Loss: 2}, Impairment{}); err == nil {
		t.Error("Impair(loss 2) = nil; want an error")
	}
}

// TestRelayBlackhole: while on, nothing passes either way and all is
// counted; off again, packets pass.
func TestRelayBlackhole(t *testing.T) {
	rig := newRelayRig(t, 1)
	rig.up(t, 1, 10)
	from, _ := recv(t, rig.target)
	rig.relay.Blackhole(true)
	rig.up(t, 5, 10)
	rig.target.WriteToUDPAddrPort([]byte("x"), from)
	waitFor(t, func() bool { s := rig.relay.Stats(); return s.UpBlackholed == 5 && s.DownBlackholed == 1 })
	rig.relay.Blackhole(false)
	rig.up(t, 1, 10)
	recv(t, rig.target)
	// The relay counts a packet after sending it: the target can read it
	// first.
	waitFor(t, func() bool { return rig.relay.Stats().UpForwarded >= 2 })
	if s := rig.relay.Stats(); s.UpForwarded != 2 || s.UpBlackholed != 5 {
		t.Errorf("stats = %+v; want 2 forwarded up, 5 blackholed", s)
	}
}

// TestRelayDoesNotAllocate: forwarding a packet allocates nothing in the
// relay (buffers are pooled); the rig's own socket calls allocate nothing
// either. The race detector's pool drops objects, so it skips there.
func TestRelayDoesNotAllocate(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("sync.Pool drops pooled objects under -race")
	}
	rig := newRelayRig(t, 1)
	if err := rig.relay.Impair(Impairment{Delay: time.Millisecond, RateKbit: 100_000}, Impairment{}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1000)
	buf := make([]byte, relayPacket)
	dst := rig.relay.Addr()
	rig.target.SetReadDeadline(time.Now().Add(time.Minute))
	allocs := testing.AllocsPerRun(200, func() {
		rig.client.WriteToUDPAddrPort(b, dst)
		if _, _, err := rig.target.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("allocations per forwarded packet = %v; want 0", allocs)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

// count reads up to n packets from c, waiting at most 10 s in all.
func count(c *net.UDPConn, n int) int {
	buf := make([]byte, relayPacket)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := 0
	for got < n {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		got++
	}
	return got
}
