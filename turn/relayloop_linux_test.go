//go:build linux && (amd64 || arm64)

package turn

import (
	"net"
	"sync"
	"testing"
	"time"
)

// loopSockets is how many relayed sockets r's loop reads now.
func (r *testRelay) loopSockets() int {
	r.loop.mu.Lock()
	defer r.loop.mu.Unlock()
	return len(r.loop.socks)
}

// indexedClients is how many UDP clients have a channel bound.
func (r *testRelay) indexedClients() int {
	r.channels.mu.RLock()
	defer r.channels.mu.RUnlock()
	return len(r.channels.byClient)
}

// outsidePeer is a relay that may reach loopback peers, and a peer socket
// outside the instance (not its media address).
func outsidePeer(t *testing.T) (*testRelay, *net.UDPConn) {
	t.Helper()
	r := startRelay(t, func(c *Config) { c.AllowPeers = []string{"127.0.0.0/8"} })
	peer, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return r, peer
}

// readFrom reads relayed's next datagram within 10 s.
func readFrom(t *testing.T, relayed net.PacketConn) (string, net.Addr) {
	t.Helper()
	if err := relayed.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1600)
	n, from, err := relayed.ReadFrom(buf)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	return string(buf[:n]), from
}

// TestRelayLoopPeerReachesClient has a peer outside the instance send to
// a UDP client's relayed address, first with only a permission (a Data
// indication, which the loop leaves to Pion's reader through the inbox),
// then on a bound channel (ChannelData, which the loop relays itself),
// and checks that the client gets both from the peer, that the socket is
// the loop's, and that both are counted.
func TestRelayLoopPeerReachesClient(t *testing.T) {
	r, peer := outsidePeer(t)
	ice := r.ICEServers("dora")
	c := turnClient(t, r, transportUDP, ice[0].Username, ice[0].Credential)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relayed.Close()
	if got := r.loopSockets(); got != 1 {
		t.Fatalf("sockets in the loop after one allocation = %d; want 1", got)
	}
	if err := c.CreatePermission(peer.LocalAddr()); err != nil {
		t.Fatalf("CreatePermission(%s) = %v", peer.LocalAddr(), err)
	}
	to := relayed.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := peer.WriteToUDPAddrPort([]byte("indication"), to); err != nil {
		t.Fatal(err)
	}
	if got, from := readFrom(t, relayed); got != "indication" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("client read %q from %s; want %q from %s", got, from, "indication", peer.LocalAddr())
	}

	buf := make([]byte, 1600)
	for r.indexedClients() == 0 { // the client binds a channel as it sends
		if _, err := relayed.WriteTo([]byte("bind"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := peer.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("peer read: %v", err)
		}
	}
	kernelFrom := r.metrics.bytes[transportUDP].kernelFrom.Load()
	if _, err := peer.WriteToUDPAddrPort([]byte("channel"), to); err != nil {
		t.Fatal(err)
	}
	if got, from := readFrom(t, relayed); got != "channel" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("client read %q from %s; want %q from %s", got, from, "channel", peer.LocalAddr())
	}
	if got := r.metrics.bytes[transportUDP].kernelFrom.Load() - kernelFrom; got != 1 {
		t.Errorf("datagrams counted from the kernel for one on the channel = %d; want 1", got)
	}
}

// TestRelayLoopCloseWhileFlooded closes an allocation while its peer
// floods the relayed address: the socket leaves the loop, the allocation
// is gone, and a new allocation (likely on the same descriptor number)
// relays while the flood goes on to the old port.
func TestRelayLoopCloseWhileFlooded(t *testing.T) {
	r, peer := outsidePeer(t)
	relayed, err := allocate(t, r, transportUDP, "fred")
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	echoPeer := echoSocket(t)
	echo(t, relayed, echoPeer.LocalAddr(), "before")
	if _, err := relayed.WriteTo([]byte("permit"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the flood: as fast as the socket sends, until stopped
		defer wg.Done()
		to := relayed.LocalAddr().(*net.UDPAddr).AddrPort()
		p := make([]byte, 160)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = peer.WriteToUDPAddrPort(p, to) // refused once the port is closed
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	from := r.metrics.bytes[transportUDP].kernelFrom.Load()
	eventually(t, "the flood to reach the loop", func() bool { return r.metrics.bytes[transportUDP].kernelFrom.Load() > from+100 })

	relayed.Close() // refreshes with lifetime 0: Pion deletes the allocation
	eventually(t, "the socket out of the loop", func() bool { return r.loopSockets() == 0 })
	eventually(t, "the allocation gone", func() bool { return r.ledger.count() == 0 })

	again, err := allocate(t, r, transportUDP, "fred")
	if err != nil {
		t.Fatalf("allocate again: %v", err)
	}
	echo(t, again, echoPeer.LocalAddr(), "after") // skips the flood, should the port be the old one
}

// TestRelayLoopOnlyForUDP checks which relays the loop reads: a TCP
// client's relayed socket stays with Pion's reader, a UDP client's joins
// the loop with or without a handoff to the SFU.
func TestRelayLoopOnlyForUDP(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	relayed, err := allocate(t, r, transportTCP, "tina")
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if got := r.loopSockets(); got != 0 {
		t.Errorf("sockets in the loop after a TCP allocation = %d; want 0", got)
	}
	echo(t, relayed, r.media.LocalAddr(), "tcp")
	hr, _ := startHandoffRelay(t)
	if _, err := allocate(t, hr, transportUDP, "ursula"); err != nil {
		t.Fatalf("allocate with a handoff: %v", err)
	}
	if got := hr.loopSockets(); got != 1 {
		t.Errorf("sockets in the loop after a UDP allocation with a handoff = %d; want 1", got)
	}
}
