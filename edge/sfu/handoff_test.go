package sfu

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/internal/handoff"
)

// memRelay stands between one client and the engine as the instance's
// own TURN relay does for a relay-only client: the client's datagrams
// reach the engine through the hand-off (Deliver, as from relayed, the
// allocation's address), and the engine's datagrams for relayed leave
// through the route's Sender to the client, never through the kernel
// between the two. The client is given front's address in place of the
// engine's (subscribeVia).
type memRelay struct {
	front   *net.UDPConn
	relayed netip.AddrPort
	sw      *handoff.Switch
	inbox   *handoff.Conn // the route's Conn; the Sender takes everything

	client atomic.Pointer[netip.AddrPort]

	// tap is the subscriber's RTCP tap; atOnce counts the client's RTCP
	// datagrams the tap had taken by the time Deliver returned.
	tap    atomic.Pointer[rtcpTap]
	atOnce atomic.Int64

	// With lending, the route's Sender is a lendingRelay: lent is the
	// buffer it lends, commits and sends count its datagrams.
	lent           [2048]byte
	commits, sends atomic.Int64

	wg sync.WaitGroup
}

// lendingRelay is a memRelay whose route lends the engine a buffer
// (handoff.Lender), as the relay's batch does during a fan-out.
type lendingRelay struct{ *memRelay }

func (r lendingRelay) Lend(netip.AddrPort) []byte { return r.lent[:] }

func (r lendingRelay) Commit(n int) {
	r.commits.Add(1)
	r.toClient(r.lent[:n])
}

func (r lendingRelay) Cancel() {}

// newMemRelay is a memRelay for e; lending makes its route a Lender.
func newMemRelay(t *testing.T, e *Engine, lending bool) *memRelay {
	t.Helper()
	// The relayed address is a socket's of this test, held open so that
	// nothing else has it, and never used: the engine's datagrams for it
	// are handed over.
	held := relayListen(t)
	r := &memRelay{front: relayListen(t), relayed: held.LocalAddr().(*net.UDPAddr).AddrPort(), sw: e.Handoff(), inbox: handoff.NewFedConn(16)}
	var sender handoff.Sender = r
	if lending {
		sender = lendingRelay{r}
	}
	r.sw.Attach(r.relayed, handoff.Route{Conn: r.inbox, Peer: e.UDPAddr().AddrPort(), Sender: sender})
	r.wg.Add(1)
	go r.up()
	t.Cleanup(func() {
		r.sw.Detach(r.relayed, r.inbox)
		_ = r.front.Close()
		r.wg.Wait()
		_ = r.inbox.Close()
		_ = held.Close()
	})
	return r
}

func (r *memRelay) port() int { return r.front.LocalAddr().(*net.UDPAddr).Port }

// Send is the route's handoff.Sender: the engine's datagram goes to the
// client from front, as the relay's ChannelData would.
func (r *memRelay) Send(p []byte, _ netip.AddrPort) bool {
	r.sends.Add(1)
	r.toClient(p)
	return true
}

func (r *memRelay) toClient(p []byte) {
	if c := r.client.Load(); c != nil {
		_, _ = r.front.WriteToUDPAddrPort(p, *c)
	}
}

// up hands the client's datagrams to the engine's media socket.
func (r *memRelay) up() {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	media := r.sw.Media()
	for {
		n, from, err := r.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r.client.Store(&from)
		p := buf[:n]
		tap := r.tap.Load()
		if tap == nil || len(p) < 8 || p[0]>>6 != 2 || p[1] < 192 || p[1] > 223 {
			media.Deliver(p, r.relayed)
			continue
		}
		took := tap.took.Load()
		media.Deliver(p, r.relayed)
		if tap.took.Load() > took {
			r.atOnce.Add(1)
		}
	}
}

// TestRelayedSubscriberRTCPTapped: a subscriber whose datagrams the
// relay hands over has its RTCP taken by its tap as it is handed over, on
// the relay's goroutine, not queued for the socket's reader, but for
// about one datagram a second left to Pion; its feedback makes an
// estimate, and its media arrives through the hand-off.
func TestRelayedSubscriberRTCPTapped(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	plis := pub.readPLIs(t)
	video, _ := pub.publications(t)
	relay := newMemRelay(t, h.engine, false)
	sub := h.newSubscriber(t, clientAPI(t, true))
	tap := &sub.conn.direct.tap
	relay.tap.Store(tap)
	sub.subscribeVia(t, relay, h.engine.UDPAddr().Port, video)
	sub.awaitTracks(t, 1, pub.video)
	awaitPLI(t, plis, "subscriber's start")
	pub.feed(t, 5*time.Millisecond, true)

	deadline := time.Now().Add(waitFor)
	for relay.atOnce.Load() < 20 || tap.left.Load() < 2 || sub.conn.Estimate() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("within %s: %d RTCP datagrams taken as handed over (%d tapped in all), %d left to Pion, estimate %.0f bit/s; want 20 or more, 2 or more, and an estimate",
				waitFor, relay.atOnce.Load(), tap.took.Load(), tap.left.Load(), sub.conn.Estimate())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pair, err := sub.server.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Remote.Port != relay.relayed.Port() {
		t.Errorf("server's selected pair = %v, %v; want the remote at the relayed address %s", pair, err, relay.relayed)
	}
}

// TestRelayedSubscriberCopiesLent: the copies of a fan-out to a relayed
// subscriber are encrypted straight into the buffer the relay lends
// (handoff.Lender), and arrive whole: the subscriber's Pion decrypts and
// authenticates every one it counts. (A fan-out batches, and borrows,
// from two subscribers up: a direct one is the other.)
func TestRelayedSubscriberCopiesLent(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	direct := h.newSubscriber(t, clientAPI(t, true))
	direct.subscribe(t, video)
	relay := newMemRelay(t, h.engine, true)
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribeVia(t, relay, h.engine.UDPAddr().Port, video)
	got := countPackets(sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo])
	pub.feed(t, 5*time.Millisecond, false)

	deadline := time.Now().Add(waitFor)
	for got.n.Load() < 200 || relay.commits.Load() < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("within %s: %d video packets received, %d copies written in the lent buffer, %d sent through Send; want 200 or more of both",
				waitFor, got.n.Load(), relay.commits.Load(), relay.sends.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
