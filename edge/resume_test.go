package edge

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// withGrace turns resume on with grace.
func withGrace(grace time.Duration) func(*Config) {
	return func(c *Config) { c.ResumeGrace = grace }
}

// tcpDialer is a WebSocket dialer that keeps the TCP connections it
// opened, so a test can reset them.
type tcpDialer struct {
	mu    sync.Mutex
	conns []*net.TCPConn
}

func (d *tcpDialer) dialer() *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 5 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				d.mu.Lock()
				d.conns = append(d.conns, c.(*net.TCPConn))
				d.mu.Unlock()
			}
			return c, err
		}}
}

// reset closes the last connection with a TCP reset (linger 0).
func (d *tcpDialer) reset(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	c := d.conns[len(d.conns)-1]
	d.mu.Unlock()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// eventLog keeps every event a client receives.
type eventLog struct {
	mu  sync.Mutex
	evs []*signal.Message
}

func (l *eventLog) add(m *signal.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, m)
}

// count counts the events of typ about participant id ("" for any).
func (l *eventLog) count(typ, id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.evs {
		if m.Type == typ && (id == "" || m.Participant != nil && m.Participant.ID == id) {
			n++
		}
	}
	return n
}

// watched dials identity into room with its events logged.
func (ts *testServer) watched(t *testing.T, room, identity string, opts client.Options) (*client.Client, *eventLog) {
	t.Helper()
	log := &eventLog{}
	opts.OnEvent = log.add
	return ts.dialWith(t, ts.token(t, room, identity, bothGrants), opts), log
}

// mediaFrom waits until r has packets of kind from id.
func mediaFrom(t *testing.T, r *receiver, id, kind string) {
	t.Helper()
	waitFor(t, 10*time.Second, "media from "+id, func() bool {
		st, ok := r.stats(id, kind)
		return ok && st.packets > 10
	})
}

// mediaBackAfter waits until r receives a packet of kind from id after
// since, and returns how long after since it came.
func mediaBackAfter(t *testing.T, r *receiver, id, kind string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	var back time.Duration
	waitFor(t, limit, "media from "+id+" after the restore", func() bool {
		st, _ := r.stats(id, kind)
		back = st.lastAt.Sub(since)
		return st.lastAt.After(since)
	})
	return back
}

// TestResumeAfterWebSocketReset: the signaling connection of a publishing
// participant is reset (TCP RST) while its media flows. The client
// resumes on its own within the grace period as the same participant;
// the other participant sees no leave and no gap in its media; the
// session goes on (a later change still reaches it).
func TestResumeAfterWebSocketReset(t *testing.T) {
	ts := startServer(t, withGrace(5*time.Second))
	d := &tcpDialer{}
	alice, _ := ts.watched(t, "r", "alice", client.Options{API: ts.api, Dialer: d.dialer()})
	bob, bobLog := ts.watched(t, "r", "bob", client.Options{API: ts.api})
	at := receive(t, bob)
	publish(t, alice)
	mediaFrom(t, at, alice.ID(), "video")
	before, _ := at.stats(alice.ID(), "video")

	d.reset(t)
	waitFor(t, 5*time.Second, "alice resumed", func() bool { return alice.Resumes() == 1 })
	id := alice.ID()
	// Media kept flowing through the reset and the resume: the packets
	// since go on without a gap. A loaded machine may send them slowly,
	// so the test waits for them rather than for a fixed time.
	var after trackStats
	waitFor(t, 10*time.Second, "more video from alice", func() bool {
		after, _ = at.stats(id, "video")
		return after.packets >= before.packets+10
	})
	if after.gaps != before.gaps {
		t.Errorf("bob's video from alice: %d packets, %d gaps before the reset; %d, %d after; want more packets and no new gap",
			before.packets, before.gaps, after.packets, after.gaps)
	}
	if n := bobLog.count(signal.TypeParticipantLeft, id); n != 0 {
		t.Errorf("bob saw alice leave %d times; want 0", n)
	}
	if got := ts.srv.Sessions().Len(); got != 2 {
		t.Errorf("sessions = %d; want 2", got)
	}
	if n := ts.counter(t, "media_resumes", "result", resumeOK); n != 1 {
		t.Errorf("media_resumes_total{result=ok} = %d; want 1", n)
	}
	// The resumed signaling works: a third participant's join reaches alice.
	carol := ts.dial(t, "r", "carol")
	waitFor(t, 5*time.Second, "bob told of carol", func() bool { return bobLog.count(signal.TypeParticipantJoined, carol.ID()) == 1 })
	if err := alice.Send(&signal.Message{Type: signal.TypeICERestart, Target: signal.TargetSubscriber}); err != nil {
		t.Fatalf("send on the resumed connection: %v", err)
	}
	waitFor(t, 5*time.Second, "subscriber ICE restart", func() bool {
		return ts.counter(t, "media_ice_restarts", "target", signal.TargetSubscriber) == 1
	})
}

// blackholeNet is the network of a client whose UDP path can be cut: its
// sockets drop every datagram both ways while cut is set, as a phone's
// do in a tunnel. Sockets opened later (an ICE restart gathers anew)
// have new ports, so the client's address changes too.
type blackholeNet struct {
	transport.Net
	cut atomic.Bool
}

func newBlackholeNet(t *testing.T) *blackholeNet {
	t.Helper()
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	return &blackholeNet{Net: n}
}

func (n *blackholeNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &blackholeConn{UDPConn: c, cut: &n.cut}, nil
}

type blackholeConn struct {
	transport.UDPConn
	cut *atomic.Bool
}

func (c *blackholeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(b), nil
	}
	return c.UDPConn.WriteTo(b, addr)
}

func (c *blackholeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(b)
		if err != nil || !c.cut.Load() {
			return n, addr, err
		}
	}
}

// blackholeAPI returns a client API whose UDP path bh can cut, with the
// ICE timeouts given (disconnected after disconnected without a packet,
// failed 10 s later, keepalives every keepalive).
func blackholeAPI(t *testing.T, disconnected, keepalive time.Duration) (*blackholeNet, *webrtc.API) {
	t.Helper()
	bh := newBlackholeNet(t)
	api, err := client.NewAPI(func(se *webrtc.SettingEngine) {
		client.LoopbackOnly(se)
		se.SetNet(bh)
		se.SetICETimeouts(disconnected, 10*time.Second, keepalive)
	})
	if err != nil {
		t.Fatal(err)
	}
	return bh, api
}

// TestICERestartAfterUDPCut: a participant's UDP path is cut for 6 s and
// restored. Its client restarts ICE on both connections on its own; it
// stays the same participant, the other sees no leave, and media flows
// both ways again within 2 s of the restore (the figure is logged; the
// assertion allows a loaded machine a margin).
func TestICERestartAfterUDPCut(t *testing.T) {
	ts := startServer(t, withGrace(15*time.Second))
	bh, api := blackholeAPI(t, time.Second, 200*time.Millisecond)
	alice, _ := ts.watched(t, "r", "alice", client.Options{API: api})
	bob, bobLog := ts.watched(t, "r", "bob", client.Options{API: ts.api})
	atBob, atAlice := receive(t, bob), receive(t, alice)
	publish(t, alice)
	publish(t, bob)
	mediaFrom(t, atBob, alice.ID(), "video")
	mediaFrom(t, atAlice, bob.ID(), "video")
	id := alice.ID()

	bh.cut.Store(true)
	waitFor(t, 10*time.Second, "alice's connections down", func() bool {
		return alice.Publisher().ICEConnectionState() != webrtc.ICEConnectionStateConnected &&
			alice.Subscriber().ICEConnectionState() != webrtc.ICEConnectionStateConnected
	})
	time.Sleep(6*time.Second - time.Second) // the rest of the cut: network time, not a wait for a state
	restored := time.Now()
	bh.cut.Store(false)

	up := mediaBackAfter(t, atBob, id, "video", restored, 10*time.Second)
	down := mediaBackAfter(t, atAlice, bob.ID(), "video", restored, 10*time.Second)
	t.Logf("media back after the restore: alice to bob %s, bob to alice %s", up.Round(time.Millisecond), down.Round(time.Millisecond))
	const target, margin = 2 * time.Second, 2 * time.Second
	if up > target+margin || down > target+margin {
		t.Errorf("media back after %s up, %s down; want within %s (plus %s for a loaded machine)", up, down, target, margin)
	}
	if alice.ID() != id || ts.srv.Sessions().Len() != 2 {
		t.Errorf("alice is %s among %d sessions; want %s among 2", alice.ID(), ts.srv.Sessions().Len(), id)
	}
	if n := bobLog.count(signal.TypeParticipantLeft, id); n != 0 {
		t.Errorf("bob saw alice leave %d times; want 0", n)
	}
	for _, target := range []string{signal.TargetPublisher, signal.TargetSubscriber} {
		if n := ts.counter(t, "media_ice_restarts", "target", target); n == 0 {
			t.Errorf("media_ice_restarts_total{target=%s} = 0; want some", target)
		}
	}
}

// TestBriefDisconnectNeedsNoRestart: a participant's UDP path drops for
// a moment, long enough for its connections to go disconnected (as a
// loaded machine's do), and comes back at once. The client gives them
// time to recover by themselves instead of restarting ICE: no restart,
// and media flows again.
func TestBriefDisconnectNeedsNoRestart(t *testing.T) {
	ts := startServer(t, withGrace(15*time.Second))
	bh, api := blackholeAPI(t, 500*time.Millisecond, 100*time.Millisecond)
	alice, _ := ts.watched(t, "r", "alice", client.Options{API: api})
	bob, _ := ts.watched(t, "r", "bob", client.Options{API: ts.api})
	atBob := receive(t, bob)
	publish(t, alice)
	mediaFrom(t, atBob, alice.ID(), "video")

	bh.cut.Store(true)
	waitFor(t, 10*time.Second, "alice's publisher down", func() bool {
		return alice.Publisher().ICEConnectionState() != webrtc.ICEConnectionStateConnected
	})
	restored := time.Now()
	bh.cut.Store(false)
	mediaBackAfter(t, atBob, alice.ID(), "video", restored, 10*time.Second)
	for _, target := range []string{signal.TargetPublisher, signal.TargetSubscriber} {
		if n := ts.counter(t, "media_ice_restarts", "target", target); n != 0 {
			t.Errorf("media_ice_restarts_total{target=%s} = %d; want 0 after a moment's disconnection", target, n)
		}
	}
}

// TestCloseFrameEndsSession: a client that closes its WebSocket with a
// close frame meant to go: its session ends at once, not after the grace,
// and the others see it leave.
func TestCloseFrameEndsSession(t *testing.T) {
	ts := startServer(t, withGrace(time.Minute))
	alice := ts.dial(t, "r", "alice")
	_, bobLog := ts.watched(t, "r", "bob", client.Options{API: ts.api})
	id := alice.ID()
	alice.Close()
	waitSessionClosed(t, ts, reasonClientClosed, 1)
	waitFor(t, 5*time.Second, "bob told alice left", func() bool { return bobLog.count(signal.TypeParticipantLeft, id) == 1 })
}
