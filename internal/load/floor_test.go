package load

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// startTestRelay runs the floor relay in-process on a real socket, sending
// with sendmmsg when batch is set.
func startTestRelay(t *testing.T, batch bool) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("ListenUDP: %v", err)
	}
	r := newFloorRelay(conn)
	if batch {
		r.batch = ipv4.NewPacketConn(conn)
	}
	var wg sync.WaitGroup
	wg.Go(r.serve)
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestFloorRelayFansOutWithinGroup(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) { testFanOutWithinGroup(t, batch) })
	}
}

func testFanOutWithinGroup(t *testing.T, batch bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay := startTestRelay(t, batch)
	groups := []uint32{0, 0, 0, 1, 1} // members 0-2 in group 0, 3-4 in group 1
	conns := make([]*net.UDPConn, len(groups))
	for i, g := range groups {
		c, err := joinFloor(ctx, relay, g)
		if err != nil {
			t.Fatalf("joinFloor(group %d) = %v", g, err)
		}
		defer c.Close()
		conns[i] = c
	}
	tests := []struct {
		from int
		want []int // members that must receive it
	}{
		{from: 0, want: []int{1, 2}},
		{from: 2, want: []int{0, 1}},
		{from: 4, want: []int{3}},
	}
	for _, tt := range tests {
		msg := []byte{byte(tt.from), 'm', 'e', 'd', 'i', 'a'}
		if _, err := conns[tt.from].WriteToUDPAddrPort(msg, relay); err != nil {
			t.Fatalf("member %d send: %v", tt.from, err)
		}
		for _, to := range tt.want {
			if got := readOne(t, conns[to], time.Second); string(got) != string(msg) {
				t.Errorf("member %d received %q from member %d's send; want %q", to, got, tt.from, msg)
			}
		}
	}
	// Nobody received anything else: not the sender, not the other group.
	for i, c := range conns {
		if got := readOne(t, c, 100*time.Millisecond); got != nil {
			t.Errorf("member %d received extra packet %q; want none", i, got)
		}
	}
}

// readOne reads one datagram, or returns nil after wait. It passes over
// late acknowledgements: joinFloor registers again every 100 ms until one
// arrives, so on a loaded machine a second acknowledgement can follow
// the first, as the relay's receive loop ignores it too.
func readOne(t *testing.T, c *net.UDPConn, wait time.Duration) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		if !bytes.Equal(buf[:n], floorAck) {
			return buf[:n]
		}
	}
}

// TestSinkOverUDPCountsLossAndLatency sends stamped packets over a real
// socket pair, skipping some sequence numbers and repeating one, and
// checks the receiver's accounting.
func TestSinkOverUDPCountsLossAndLatency(t *testing.T) {
	relay := startTestRelay(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := newMediaRun(newClock(), DefaultMedia())
	var members []*floorMember
	for range 2 {
		c, err := joinFloor(ctx, relay, 0)
		if err != nil {
			t.Fatalf("joinFloor = %v", err)
		}
		members = append(members, &floorMember{conn: c, sink: m.addSink(), relay: relay})
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer closeMembers(members)
	wg.Go(func() { members[1].receive(m.clk) })

	s := m.newSender(kindAudio, members[0].writer(100))
	members[1].sink.expect(s.src)
	s.src.openWindow()
	const n = 200
	for i := range n {
		p := s.packet(uint32(i), 1)
		if i%10 == 3 {
			continue // taken a sequence number but never sent: loss
		}
		if err := s.write(p); err != nil {
			t.Fatalf("write: %v", err)
		}
		if i == 50 {
			_ = s.write(p) // the same packet twice: a duplicate
		}
	}
	s.src.closeWindow()
	m.waitDelivered(ctx, 300*time.Millisecond)

	got := m.totals()
	if got.expected != n || got.got != n-n/10 || got.lost() != n/10 || got.dup != 1 {
		t.Errorf("expected, got, lost, dup = %d, %d, %d, %d; want %d, %d, %d, 1",
			got.expected, got.got, got.lost(), got.dup, n, n-n/10, n/10)
	}
	if p50 := time.Duration(got.lat.quantile(0.5)); p50 <= 0 || p50 > time.Second {
		t.Errorf("latency p50 over loopback = %s; want between 0 and 1s", p50)
	}
}

// TestFloorPhaseWithChildRelay runs the whole floor phase as a real run
// does, batched (the default) and not: the relay is a child process, the
// senders are paced, and the relay's CPU comes from the child's getrusage.
func TestFloorPhaseWithChildRelay(t *testing.T) {
	for _, batch := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) { testFloorPhase(t, batch) })
	}
}

func testFloorPhase(t *testing.T, batch bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mc := DefaultMedia()
	mc.VideoKbps = 880 // 100 packets/s of 1100 bytes
	topo := topology{{publishers: 1, listeners: 3}}
	tm := Timing{Warmup: 200 * time.Millisecond, Window: 1500 * time.Millisecond, Grace: 2 * time.Second}
	res, err := runFloor(ctx, testFloorOptions(t, batch), topo, mc, tm, nil)
	if err != nil {
		t.Fatalf("runFloor = %v", err)
	}
	perSub := (mc.VideoPPS() + float64(mc.AudioPPS)) * tm.Window.Seconds()
	if exp := float64(res.media.expected); exp < 0.5*3*perSub || exp > 1.5*3*perSub {
		t.Errorf("expected packets = %.0f; want about %.0f (3 receivers x %.0f)", exp, 3*perSub, perSub)
	}
	if res.media.lost() != 0 || res.media.unexpected != 0 {
		t.Errorf("floor lost %d, unexpected %d; want 0, 0", res.media.lost(), res.media.unexpected)
	}
	if res.cpu <= 0 || res.cpuPerPacket() <= 0 {
		t.Errorf("relay CPU = %s (%s per packet); want positive from the child's getrusage", res.cpu, res.cpuPerPacket())
	}
	if res.sendErrors != 0 {
		t.Errorf("send errors = %d; want 0", res.sendErrors)
	}
}

func TestExpectOthersSkipsOwnSources(t *testing.T) {
	var total atomic.Uint64
	members := []*floorMember{
		{sink: newSink(newClock(), nil, &total)},
		{sink: newSink(newClock(), nil, &total)},
		{sink: newSink(newClock(), nil, &total)},
	}
	a, b := newSource(1, kindAudio), newSource(2, kindVideo)
	expectOthers(members, [][]*source{{a, b}, nil, nil})
	for i, want := range []int{0, 2, 2} {
		if got := len(members[i].sink.windows); got != want {
			t.Errorf("member %d expects %d sources; want %d", i, got, want)
		}
	}
}
