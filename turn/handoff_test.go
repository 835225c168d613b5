package turn

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/media-service/media-service/internal/handoff"
)

// sfuEcho stands in for the SFU's UDP socket behind a handoff: it echoes
// every datagram as the SFU's mux writes, through the switch when the
// destination is a relayed address of ours, and tells what it read.
type sfuEcho struct {
	sw   *handoff.Switch
	seen chan echoed
}

// echoed is one datagram the echo read: its source and whether it came
// in memory.
type echoed struct {
	from   netip.AddrPort
	handed bool
}

func startSFUEcho(t testing.TB) *sfuEcho {
	t.Helper()
	c, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	hc := handoff.NewConn(c, handoff.MediaQueue)
	e := &sfuEcho{sw: handoff.NewSwitch(hc), seen: make(chan echoed, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, handed, err := hc.Read(buf)
			if err != nil {
				return
			}
			select {
			case e.seen <- echoed{from, handed}:
			default: // a benchmark reads none
			}
			if !e.sw.Send(buf[:n], from) {
				_, _ = c.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	t.Cleanup(func() { hc.Close(); <-done })
	return e
}

// startHandoffRelay is a relay whose own media socket is an sfuEcho
// connected in memory.
func startHandoffRelay(t testing.TB) (*testRelay, *sfuEcho) {
	t.Helper()
	sfu := startSFUEcho(t)
	opts := Options{Media: []net.Addr{sfu.sw.Media().LocalAddr()}, Handoff: sfu.sw}
	return runRelay(t, testConfig(), opts, func(*Server) {}), sfu
}

// TestHandoffToMedia relays datagrams between Pion TURN clients and the
// SFU's socket over each client transport: the SFU sees them from the
// relayed address, the client sees the replies from the media address,
// and both directions are counted as handed over in memory, none as
// through the kernel.
func TestHandoffToMedia(t *testing.T) {
	for _, transport := range []string{transportUDP, transportTCP} {
		t.Run(transport, func(t *testing.T) {
			r, sfu := startHandoffRelay(t)
			relayed, media := allocateToMedia(t, r, sfu, transport)
			tr := attribute.String("transport", transport)
			before := map[string]int64{}
			for _, d := range []string{toPeer, fromPeer} {
				before[d] = r.counter(t, "media_turn_relayed_packets", tr, attribute.String("direction", d))
			}
			for i := range 5 {
				if got, err := roundTrip(t, relayed, media, fmt.Sprintf("ping %d", i)); err != nil || got != fmt.Sprintf("ping %d", i) {
					t.Fatalf("round trip %d = %q, %v; want \"ping %d\"", i, got, err, i)
				}
			}
			want := echoed{relayed.LocalAddr().(*net.UDPAddr).AddrPort(), true}
			if got := <-sfu.seen; got != want {
				t.Errorf("SFU read a datagram from %s (handed %v); want from the relayed address %s, handed", got.from, got.handed, want.from)
			}
			for _, d := range []string{toPeer, fromPeer} {
				dir := attribute.String("direction", d)
				if got := r.counter(t, "media_turn_relayed_packets", tr, dir, attribute.String("path", pathMemory)); got != before[d]+5 {
					t.Errorf("media_turn_relayed_packets{%s,memory} = %d; want %d", d, got, before[d]+5)
				}
				if got := r.counter(t, "media_turn_relayed_packets", tr, dir, attribute.String("path", pathKernel)); got != 0 {
					t.Errorf("media_turn_relayed_packets{%s,kernel} = %d; want 0", d, got)
				}
			}
		})
	}
}

// TestHandoffLends checks the relay's lending of its batch's buffer to
// the SFU (handoff.Lender): during a fan-out, a datagram the SFU writes
// into the lent buffer reaches the client as from the media address,
// counted as handed over, and a cancelled one sends nothing; outside a
// fan-out, or from an address the client has no channel to, nothing is
// lent (the SFU then uses Send).
func TestHandoffLends(t *testing.T) {
	r, sfu := startHandoffRelay(t)
	relayed, media := allocateToMedia(t, r, sfu, transportUDP)
	route, ok := sfu.sw.Route(relayed.LocalAddr().(*net.UDPAddr).AddrPort())
	lender, isLender := route.Sender.(handoff.Lender)
	if !ok || !isLender {
		t.Fatalf("route to the relayed address = %+v, %v; want one whose Sender lends", route, ok)
	}
	// The echoes may have come back before the relay learned of the
	// channel Pion's client binds in the background: nothing is lent
	// without one.
	eventually(t, "a buffer lent on the bound channel", func() bool {
		sfu.sw.Hold()
		defer sfu.sw.Release()
		if lender.Lend(route.Peer) == nil {
			return false
		}
		lender.Cancel()
		return true
	})
	if buf := lender.Lend(route.Peer); buf != nil {
		lender.Cancel()
		t.Fatal("Lend outside a fan-out = a buffer; want nil")
	}
	dir := []attribute.KeyValue{attribute.String("transport", transportUDP), attribute.String("direction", fromPeer), attribute.String("path", pathMemory)}
	before := r.counter(t, "media_turn_relayed_packets", dir...)

	sfu.sw.Hold()
	if buf := lender.Lend(netip.MustParseAddrPort("127.0.0.1:9")); buf != nil {
		lender.Cancel()
		t.Error("Lend from an address without a channel = a buffer; want nil")
	}
	buf := lender.Lend(route.Peer)
	if len(buf) < handoff.MaxPacket {
		t.Fatalf("Lend in a fan-out = %d bytes; want at least %d", len(buf), handoff.MaxPacket)
	}
	lender.Commit(copy(buf, "lent"))
	buf = lender.Lend(route.Peer)
	if buf == nil {
		t.Fatal("second Lend in the fan-out = nil; want a buffer")
	}
	copy(buf, "cancelled")
	lender.Cancel()
	sfu.sw.Release()

	b := make([]byte, 1500)
	_ = relayed.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := relayed.ReadFrom(b)
	if err != nil || string(b[:n]) != "lent" || from.String() != media.String() {
		t.Fatalf("client read %q from %v, %v; want \"lent\" from %s", b[:n], from, err, media)
	}
	_ = relayed.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := relayed.ReadFrom(b); err == nil {
		t.Errorf("client read %q after the lent datagram; want nothing (the other was cancelled)", b[:n])
	}
	if got := r.counter(t, "media_turn_relayed_packets", dir...); got != before+1 {
		t.Errorf("media_turn_relayed_packets{from_peer,memory} = %d; want %d", got, before+1)
	}
}

// allocateToMedia allocates on r over transport and exchanges datagrams
// with the SFU's media socket until they come back, and returns the
// client's relayed conn and the media address.
func allocateToMedia(t *testing.T, r *testRelay, sfu *sfuEcho, transport string) (net.PacketConn, net.Addr) {
	t.Helper()
	relayed, err := allocate(t, r, transport, "alice")
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	media := sfu.sw.Media().LocalAddr()
	for i := range 3 { // until the channel is bound
		echo(t, relayed, media, fmt.Sprintf("warm %d", i))
	}
	return relayed, media
}

// echo sends msg through relayed to peer until its echo comes back (or
// fails the test), skipping stale echoes. Pion's client binds a channel
// in the background after its first send and drops ChannelData that
// arrives before the bind's response, which an echo in memory can beat.
func echo(t testing.TB, relayed net.PacketConn, peer net.Addr, msg string) {
	t.Helper()
	buf := make([]byte, 1500)
	for range 50 {
		if _, err := relayed.WriteTo([]byte(msg), peer); err != nil {
			t.Fatal(err)
		}
		_ = relayed.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, _, err := relayed.ReadFrom(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == msg {
				return
			}
		}
	}
	t.Fatalf("no echo of %q to 50 sends", msg)
}

// TestHandoffKeepsPolicy checks that the policy still refuses, at the
// write, a datagram for a port of the SFU's IP that is not its media
// socket, which goes neither to the kernel nor to the SFU.
func TestHandoffKeepsPolicy(t *testing.T) {
	r, sfu := startHandoffRelay(t)
	relayed, err := allocate(t, r, transportUDP, "mallory")
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	other := echoSocket(t) // same IP as the media socket, another port
	if _, err := relayed.WriteTo([]byte("x"), other.LocalAddr()); err != nil {
		t.Fatalf("client WriteTo: %v", err)
	}
	eventually(t, "the write-stage refusal", func() bool {
		return r.counter(t, "media_turn_peer_refusals", attribute.String("stage", stageWrite)) == 1
	})
	if got := r.counter(t, "media_turn_relayed_packets"); got != 0 {
		t.Errorf("media_turn_relayed_packets = %d; want 0", got)
	}
	select {
	case e := <-sfu.seen:
		t.Errorf("SFU read a datagram from %s; want none", e.from)
	default:
	}
}

// TestRelayReadNoAllocation checks that a relayed socket's read of a
// datagram from a permitted peer allocates nothing, from the kernel and
// handed over in memory, once the peer is known.
func TestRelayReadNoAllocation(t *testing.T) {
	sfu := startSFUEcho(t)
	peer := echoSocket(t) // also a permitted peer: the policy lists it
	m, err := newMetrics(noopMeter(), func(string) int { return 0 }, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{metrics: m, handoff: sfu.sw,
		policy: newPeerPolicy([]net.Addr{peer.LocalAddr(), sfu.sw.Media().LocalAddr()}, nil, nil, nil)}
	pc, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	relay := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	rc := s.newRelayConn(pc, transportUDP, relay)
	defer rc.Close()
	rc.handoff.route(sfu.sw.Media().LocalAddr().(*net.UDPAddr).AddrPort())
	p, buf := make([]byte, 160), make([]byte, 1600)
	for _, path := range []string{pathKernel, pathMemory} {
		send := func() {
			if path == pathKernel {
				_, _ = peer.WriteToUDPAddrPort(p, relay)
			} else {
				sfu.sw.Send(p, relay)
			}
		}
		allocs := testing.AllocsPerRun(200, func() {
			send()
			if _, _, err := rc.ReadFrom(buf); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("allocations per datagram read (%s) = %v; want 0", path, allocs)
		}
	}
}
