package turn

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v4"

	"github.com/media-service/media-service/internal/handoff"
	"github.com/media-service/media-service/internal/testenv"
)

// TestParseChannelData checks the ChannelData parser against what Pion's
// decoder accepts, and that putChannelData writes what it parses back,
// padded as Pion pads.
func TestParseChannelData(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		number uint16
		data   string
		ok     bool
	}{
		{"exact", []byte{0x40, 0x01, 0, 3, 'a', 'b', 'c'}, 0x4001, "abc", true},
		{"padded", []byte{0x7f, 0xff, 0, 3, 'a', 'b', 'c', 0}, 0x7fff, "abc", true},
		{"empty", []byte{0x40, 0x00, 0, 0}, 0x4000, "", true},
		{"length beyond the datagram", []byte{0x40, 0x01, 0, 4, 'a', 'b', 'c'}, 0, "", false},
		{"number below the range", []byte{0x3f, 0xff, 0, 1, 'a'}, 0, "", false},
		{"number above the range", []byte{0x80, 0x00, 0, 1, 'a'}, 0, "", false},
		{"short header", []byte{0x40, 0x01, 0}, 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			number, data, ok := parseChannelData(tc.in)
			if ok != tc.ok || number != tc.number || string(data) != tc.data {
				t.Errorf("parseChannelData(%x) = %#x, %q, %v; want %#x, %q, %v", tc.in, number, data, ok, tc.number, tc.data, tc.ok)
			}
		})
	}
	buf := make([]byte, 16)
	for i := range buf {
		buf[i] = 0xee // padding must be cleared
	}
	n := putChannelData(buf, 0x4abc, []byte("hello"))
	if want := []byte{0x4a, 0xbc, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0}; string(buf[:n]) != string(want) {
		t.Errorf("putChannelData = %x; want %x", buf[:n], want)
	}
}

// parkedConn is a TURN client's socket whose reader, once parked, stops
// reading: the test then reads the relay's datagrams itself.
type parkedConn struct {
	*net.UDPConn
	park    atomic.Bool
	parked  chan struct{} // closed when the reader has parked
	release chan struct{} // closed at the end of the test
	once    sync.Once
}

func (c *parkedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.park.Load() {
		c.once.Do(func() { close(c.parked) })
		<-c.release // then read on, so that the client can close its allocation
	}
	return c.UDPConn.ReadFrom(b)
}

// channelClient is a UDP client with an allocation on r whose channel to
// peer is bound, and whose Pion reader is parked: what the relay sends it
// is the test's to read from conn.
type channelClient struct {
	conn    *net.UDPConn
	relayed netip.AddrPort
	number  uint16
}

// bindChannel allocates on r, sends to peer through the relay until the
// relay has bound the channel, calling drain after each send to take the
// datagram at the peer, then parks the client's reader (poke makes the
// relay send the client something to wake it with).
func bindChannel(t *testing.T, r *testRelay, peer net.Addr, drain func(), poke func(relayed netip.AddrPort)) channelClient {
	t.Helper()
	uc, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	pc := &parkedConn{UDPConn: uc, parked: make(chan struct{}), release: make(chan struct{})}
	ice := r.ICEServers("alice")
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: r.UDPAddr().String(), Conn: pc, Username: ice[0].Username, Password: ice[0].Credential,
		RTO: 100 * time.Millisecond, LoggerFactory: quietPion(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); uc.Close() })
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	t.Cleanup(func() { relayed.Close() })
	t.Cleanup(func() { // first: the reader reads the close's answer
		_ = uc.SetReadDeadline(time.Time{})
		close(pc.release)
	})
	client := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	deadline := time.Now().Add(10 * time.Second)
	for r.channels.get(client) == nil {
		if time.Now().After(deadline) {
			t.Fatal("no channel bound within 10 s")
		}
		if _, err := relayed.WriteTo([]byte("bind"), peer); err != nil {
			t.Fatal(err)
		}
		drain()
	}
	cc := channelClient{conn: uc, relayed: relayed.LocalAddr().(*net.UDPAddr).AddrPort()}
	cc.number = r.channels.get(client).chans.Load().list[0].number
	pc.park.Store(true)
	for waited := false; !waited; {
		poke(cc.relayed)
		select {
		case <-pc.parked:
			waited = true
		case <-time.After(10 * time.Millisecond):
		}
	}
	buf := make([]byte, 1600)
	for { // the pokes the parked reader left
		_ = uc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := uc.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
	}
	return cc
}

// send writes data to the relay as ChannelData on the bound channel.
func (cc channelClient) send(t testing.TB, r *testRelay, data []byte) {
	var buf [64]byte
	n := putChannelData(buf[:], cc.number, data)
	if _, err := cc.conn.WriteToUDPAddrPort(buf[:n], r.UDPAddr().AddrPort()); err != nil {
		t.Fatal(err)
	}
}

// receive reads the relay's next datagram, which must be ChannelData of
// want on the bound channel.
func (cc channelClient) receive(t testing.TB, buf []byte, want []byte) {
	_ = cc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := cc.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	number, data, ok := parseChannelData(buf[:n])
	if !ok || number != cc.number || string(data) != string(want) || n != channelDataLen(len(want)) {
		t.Fatalf("client read %x; want ChannelData %q on %#x, padded", buf[:n], want, cc.number)
	}
}

// TestChannelRelayDoesNotAllocate relays ChannelData both ways between a
// UDP client and the SFU's socket in memory, and between the client and a
// peer through the kernel, and checks that the relay allocates nothing
// per datagram on either path once the channel is bound: the listener's
// loop, the SFU's write and the relayed socket's reader relay on the
// channel themselves, without Pion's per-datagram path.
func TestChannelRelayDoesNotAllocate(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("the race detector allocates where the code does not")
	}
	t.Run("memory", func(t *testing.T) {
		uc, err := net.ListenUDP("udp4", loopback(0))
		if err != nil {
			t.Fatal(err)
		}
		media := handoff.NewConn(uc, handoff.MediaQueue)
		t.Cleanup(func() { media.Close() })
		sw := handoff.NewSwitch(media)
		r := runRelay(t, testConfig(), Options{Media: []net.Addr{media.LocalAddr()}, Handoff: sw}, func(*Server) {})
		buf := make([]byte, 1600)
		read := func() {
			if _, _, err := media.ReadFromAddrPort(buf); err != nil {
				t.Fatal(err)
			}
		}
		cc := bindChannel(t, r, media.LocalAddr(), read, func(relayed netip.AddrPort) { sw.Send([]byte("poke"), relayed) })
		p := []byte("media")
		handed := &r.metrics.bytes[transportUDP].handedTo
		roundTrip := func() {
			n := handed.Load()
			cc.send(t, r, p)
			// The SFU reads the client's datagram once it is queued: a read
			// waiting in the kernel would be woken through a read deadline,
			// whose error net allocates, which is the SFU's cost, not the relay's.
			for handed.Load() == n {
				runtime.Gosched()
			}
			read()
			sw.Send(p, cc.relayed)
			cc.receive(t, buf, p)
		}
		for range handoff.MediaQueue { // the SFU's queue takes its slots as it goes round once
			roundTrip()
		}
		allocs := testing.AllocsPerRun(200, roundTrip)
		if allocs != 0 {
			t.Errorf("allocations per round trip through the SFU's socket in memory = %v; want 0", allocs)
		}
	})
	// Through a relayed socket, to the peer's own address, and to the
	// public address the shortcut maps to it (as behind a 1:1 NAT).
	for _, public := range []string{"", "203.0.113.7"} {
		name := "kernel"
		if public != "" {
			name = "kernel via the public address"
		}
		t.Run(name, func(t *testing.T) {
			peer, err := net.ListenUDP("udp4", loopback(0))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { peer.Close() })
			cfg, to := testConfig(), peer.LocalAddr()
			if public != "" {
				cfg.PublicIPs = []string{public}
				to = &net.UDPAddr{IP: net.ParseIP(public), Port: peer.LocalAddr().(*net.UDPAddr).Port}
			}
			r := runRelay(t, cfg, Options{Media: []net.Addr{peer.LocalAddr()}}, func(*Server) {})
			buf := make([]byte, 1600)
			var relayed netip.AddrPort
			read := func() {
				_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
				var err error
				if _, relayed, err = peer.ReadFromUDPAddrPort(buf); err != nil {
					t.Fatal(err)
				}
			}
			poke := func(to netip.AddrPort) { _, _ = peer.WriteToUDPAddrPort([]byte("poke"), to) }
			cc := bindChannel(t, r, to, read, poke)
			p := []byte("media")
			allocs := testing.AllocsPerRun(200, func() {
				cc.send(t, r, p)
				read()
				if _, err := peer.WriteToUDPAddrPort(p, relayed); err != nil {
					t.Fatal(err)
				}
				cc.receive(t, buf, p)
			})
			if allocs != 0 {
				t.Errorf("allocations per round trip through a relayed socket = %v; want 0", allocs)
			}
		})
	}
}

// TestChannelMirrorFollowsPion checks that the relay's copy of a
// client's channels goes when Pion's allocation does: after the client
// closes its allocation, the listener no longer finds it.
func TestChannelMirrorFollowsPion(t *testing.T) {
	r := startRelay(t, func(*Config) {})
	relayed, err := allocate(t, r, transportUDP, "alice")
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	for i := range 3 { // until the channel is bound
		echo(t, relayed, r.media.LocalAddr(), "warm "+string(rune('a'+i)))
	}
	count := func() int {
		r.channels.mu.RLock()
		defer r.channels.mu.RUnlock()
		return len(r.channels.byClient)
	}
	eventually(t, "a client indexed by its channel", func() bool { return count() == 1 })
	r.channels.mu.RLock()
	var clients []netip.AddrPort
	for c := range r.channels.byClient {
		clients = append(clients, c)
	}
	r.channels.mu.RUnlock()
	for _, c := range clients {
		rc := r.channels.get(c)
		if rc == nil {
			t.Fatalf("client %s left the index before its allocation closed", c)
		}
		if cs := rc.chans.Load(); cs == nil || len(cs.list) != 1 {
			t.Fatalf("channels of %s = %+v; want one", c, cs)
		}
	}
	relayed.Close() // refreshes with lifetime 0: Pion deletes the allocation
	eventually(t, "the index emptied", func() bool { return count() == 0 })
}
