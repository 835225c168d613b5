package edge

import (
	"context"
	"errors"
	"io"
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

// Network faults: a participant's network fails in the ways real ones do
// (it goes silent, or its connection is cut), and the instance must reap
// the session by its own timeouts while the rest of the room keeps its
// media. The faults are injected on the participant's side, between a
// real client and the real server: a TCP relay for the signaling and a
// UDP socket for ICE, each of which can go silent or be cut.

// faultyTCP relays TCP connections to a target. freeze makes every
// connection silent in both directions without closing it (a laptop lid
// closing, a NAT forgetting); cut resets them (a process killed).
type faultyTCP struct {
	ln     net.Listener
	target string
	frozen chan struct{} // closed by freeze
	once   sync.Once

	mu    sync.Mutex // guards conns
	conns []net.Conn
	wg    sync.WaitGroup
}

func newFaultyTCP(t *testing.T, target string) *faultyTCP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultyTCP{ln: ln, target: target, frozen: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *faultyTCP) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, down)
		go p.pipe(down, up)
	}
}

// pipe copies src to dst until either fails, or stops reading at a
// freeze (what src sends then stays in the kernel's buffers).
func (p *faultyTCP) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			<-p.closedOrForever(dst)
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			return
		}
	}
}

// closedOrForever waits, while frozen, until the test's cleanup cuts the
// connections: reading dst fails then.
func (p *faultyTCP) closedOrForever(dst net.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, dst) // ends when cut closes dst
	}()
	return done
}

func (p *faultyTCP) addr() string { return p.ln.Addr().String() }

func (p *faultyTCP) freeze() { p.once.Do(func() { close(p.frozen) }) }

// cut resets every relayed connection at once.
func (p *faultyTCP) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN: nothing is said
		}
		c.Close()
	}
	p.conns = nil
}

// faultyNet is a participant's network for ICE: its UDP sockets can go
// silent together. After freeze they neither send nor receive, as when a
// network vanishes; nothing is closed.
type faultyNet struct {
	*stdnet.Net
	frozen *atomic.Bool
}

func (n faultyNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &faultyUDP{UDPConn: c, frozen: n.frozen}, nil
}

// faultyUDP drops what it would send or receive while frozen. Pion's ICE
// uses ReadFrom and WriteTo of a socket that is not a *net.UDPConn.
type faultyUDP struct {
	transport.UDPConn
	frozen *atomic.Bool
}

func (c *faultyUDP) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(b)
		if err != nil || !c.frozen.Load() {
			return n, addr, err
		}
	}
}

func (c *faultyUDP) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.frozen.Load() {
		return len(b), nil
	}
	return c.UDPConn.WriteTo(b, addr)
}

// faultyParticipant is a client whose signaling goes through a faultyTCP
// and whose ICE uses a faultyUDP.
type faultyParticipant struct {
	*client.Client
	tcp *faultyTCP
	udp *atomic.Bool // true: ICE is silent
}

func dialFaulty(t *testing.T, ts *testServer, identity string) *faultyParticipant {
	t.Helper()
	std, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	frozen := new(atomic.Bool)
	api, err := client.NewAPI(func(se *webrtc.SettingEngine) {
		client.LoopbackOnly(se)
		se.SetNet(faultyNet{Net: std, frozen: frozen})
	})
	if err != nil {
		t.Fatal(err)
	}
	tcp := newFaultyTCP(t, ts.srv.HTTPAddr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+tcp.addr()+"/v1/rtc", ts.token(t, "demo", identity, bothGrants), client.Options{API: api})
	if err != nil {
		t.Fatalf("Dial through the faulty relay: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &faultyParticipant{Client: c, tcp: tcp, udp: frozen}
}

// mediaRoom is a room where alice receives bob's media, the baseline the
// faults must not disturb.
type mediaRoom struct {
	alice, bob *client.Client
	aliceRecv  *receiver
}

func newMediaRoom(t *testing.T, ts *testServer) *mediaRoom {
	t.Helper()
	r := &mediaRoom{alice: ts.dial(t, "demo", "alice"), bob: ts.dial(t, "demo", "bob")}
	r.aliceRecv = receive(t, r.alice)
	publish(t, r.bob)
	r.stillFlowing(t, "alice receives bob")
	return r
}

// stillFlowing waits for 25 more of bob's audio packets at alice (half a
// second of audio).
func (r *mediaRoom) stillFlowing(t *testing.T, what string) {
	t.Helper()
	before, _ := r.aliceRecv.stats(r.bob.ID(), "audio")
	waitFor(t, 10*time.Second, what, func() bool {
		st, _ := r.aliceRecv.stats(r.bob.ID(), "audio")
		return st.packets >= before.packets+25
	})
}

// waitLeft waits for c to hear that the participant with id left.
func waitLeft(t *testing.T, c *client.Client, id string, within time.Duration) {
	t.Helper()
	waitEvent(t, c, within, "participant_left for "+id, func(m *signal.Message) bool {
		return m.Type == signal.TypeParticipantLeft && m.Participant != nil && m.Participant.ID == id
	})
}

// TestVanishedClientReaped: a publishing participant whose network goes
// silent (signaling and ICE alike, nothing closed) is reaped: by the
// keepalive when the signaling is silent, by the ICE timeouts when only
// the media is. The room hears participant_left and keeps its media.
func TestVanishedClientReaped(t *testing.T) {
	tests := []struct {
		name       string
		freezeWS   bool
		freezeICE  bool
		wantReason string
	}{
		{"everything silent", true, true, ""},
		{"signaling silent", true, false, signal.ReasonTimeout},
		{"media silent", false, true, signal.ReasonICEFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 3 s: the innocent participants must answer pings in time even
			// while their reader is busy with a renegotiation on a loaded
			// machine.
			ts := startServer(t, func(c *Config) { c.PingInterval, c.IdleTimeout = 500*time.Millisecond, 3*time.Second })
			room := newMediaRoom(t, ts)
			carol := dialFaulty(t, ts, "carol")
			publish(t, carol.Client)
			waitFor(t, 10*time.Second, "alice receives carol", func() bool {
				st, _ := room.aliceRecv.stats(carol.ID(), "audio")
				return st.packets > 0
			})
			vanished := time.Now()
			carol.udp.Store(tt.freezeICE)
			if tt.freezeWS {
				carol.tcp.freeze()
			}
			waitLeft(t, room.alice, carol.ID(), 10*time.Second)
			if took := time.Since(vanished); took > 6*time.Second {
				t.Errorf("carol reaped %s after vanishing; want within the 3s idle or 2s ICE timeouts plus slack", took)
			}
			if tt.wantReason != "" {
				waitSessionClosed(t, ts, tt.wantReason, 2)
			} else {
				waitFor(t, 5*time.Second, "carol's session removed", func() bool { return ts.srv.Sessions().Len() == 2 })
			}
			room.stillFlowing(t, "alice still receives bob")
		})
	}
}

// TestClientKilledMidICE: a participant killed after its offer was
// answered but before ICE could connect (its socket reset, its
// PeerConnections gone) leaves no session behind, and the room works on.
func TestClientKilledMidICE(t *testing.T) {
	ts := startServer(t, nil)
	room := newMediaRoom(t, ts)
	dave := dialFaulty(t, ts, "dave")
	dave.udp.Store(true) // its ICE never gets through
	audio, err := client.NewAudioTrack("a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := dave.Publish(ctx, audio); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if st := dave.Publisher().ICEConnectionState(); st == webrtc.ICEConnectionStateConnected {
		t.Fatalf("dave's ICE state = %s; want it still connecting", st)
	}
	dave.tcp.cut()
	dave.Close()
	waitLeft(t, room.alice, dave.ID(), 5*time.Second)
	waitSessionClosed(t, ts, reasonClientClosed, 2)
	room.stillFlowing(t, "alice still receives bob")
}

// TestSignalingCutWhileMediaFlows: the signaling connection of a
// participant that publishes and receives is reset mid-call. Its
// session ends (its media with it), the others hear participant_left and
// lose its tracks, and keep each other's media.
func TestSignalingCutWhileMediaFlows(t *testing.T) {
	ts := startServer(t, nil)
	room := newMediaRoom(t, ts)
	erin := dialFaulty(t, ts, "erin")
	erinRecv := receive(t, erin.Client)
	publish(t, erin.Client)
	waitFor(t, 10*time.Second, "media both ways", func() bool {
		got, _ := erinRecv.stats(room.bob.ID(), "audio")
		sent, _ := room.aliceRecv.stats(erin.ID(), "audio")
		return got.packets > 0 && sent.packets > 0
	})
	erin.tcp.cut()
	waitLeft(t, room.alice, erin.ID(), 5*time.Second)
	waitFor(t, 5*time.Second, "erin's track at alice ends", func() bool {
		st, _ := room.aliceRecv.stats(erin.ID(), "audio")
		return st.ended
	})
	waitFor(t, 5*time.Second, "erin's session removed", func() bool { return ts.srv.Sessions().Len() == 2 })
	room.stillFlowing(t, "alice still receives bob")
	if st, _ := room.aliceRecv.stats(room.bob.ID(), "audio"); st.gaps != 0 || st.corrupt != 0 {
		t.Errorf("bob's audio at alice: %d gaps, %d corrupt; want none", st.gaps, st.corrupt)
	}
}

// TestDrainNotHeldByClientThatStopsReading: a client stops reading after
// enough messages to block the server's write to it, but too few to fill
// its send queue, so it is not (yet) a slow client. The drain must still
// close it within the close grace after the deadline, not after the
// write timeout: in the binary the watchdog (drain timeout + 5 s) would
// otherwise kill the process with exit 2 under a default 10 s write
// timeout.
func TestDrainNotHeldByClientThatStopsReading(t *testing.T) {
	const writeTimeout = 20 * time.Second
	ts := startServer(t, func(c *Config) {
		c.DrainTimeout, c.WriteTimeout = time.Second, writeTimeout
		c.PingInterval, c.IdleTimeout = time.Minute, 2*time.Minute
	})
	conn := rawDial(t, ts, ts.token(t, "demo", "stuck", bothGrants), 4096)
	waitFor(t, 5*time.Second, "the session", func() bool { return ts.srv.Sessions().Len() == 1 })
	fillQueue(t, ts, conn, onlySession(t, ts), 16)
	if n := ts.counter(t, "media_slow_client_disconnects", "", ""); n != 0 {
		t.Fatalf("the client was already disconnected as slow (%d); the test needs a blocked writer", n)
	}
	started := time.Now()
	ts.cancel(&ShutdownCause{Reason: "test"})
	select {
	case err := <-ts.runErr:
		ts.runErr <- err
	case <-time.After(writeTimeout):
		t.Fatalf("the drain was still running %s after it began; a blocked write held it", writeTimeout)
	}
	if took := time.Since(started); took > time.Second+2*closeGrace+time.Second {
		t.Errorf("drain took %s with a 1s drain timeout; want the deadline plus the close grace", took)
	}
}

// fillQueue makes the server's writer to conn block (conn never reads)
// and then queues until want messages wait in the session's send queue.
// Each junk message is answered with an error; one goes at a time, each
// handled before the next, so no backlog adds to the queue afterwards.
func fillQueue(t *testing.T, ts *testServer, conn *websocket.Conn, s *Session, want int) {
	t.Helper()
	junk := clientFrame([]byte(`{"type":"junk-that-gets-an-error-answer"}`))
	deadline := time.Now().Add(30 * time.Second)
	base := ts.counter(t, "media_signal_errors", "", "")
	for sent := base + 1; len(s.ws.queue) < want; sent++ {
		if _, err := conn.NetConn().Write(junk); err != nil {
			t.Fatalf("junk write: %v", err)
		}
		for ts.counter(t, "media_signal_errors", "", "") < sent {
			if time.Now().After(deadline) {
				t.Fatalf("send queue at %d of %d after 30s", len(s.ws.queue), want)
			}
		}
	}
}

// TestSlowClientCutWithinSendTimeout: once a client that does not read
// has a full send queue (256), the next message that finds no room
// disconnects it within the 1 s send timeout (not the much longer write
// timeout), and the room keeps its media. bounds_test.go's
// TestSlowClientDisconnected floods without measuring when.
func TestSlowClientCutWithinSendTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.WriteTimeout, c.PingInterval, c.IdleTimeout = 30*time.Second, time.Minute, 2*time.Minute
		c.NegotiationTimeout = time.Minute // it never answers its subscriber offer either
	})
	room := newMediaRoom(t, ts)
	conn := rawDial(t, ts, ts.token(t, "demo", "slow", bothGrants), 4096)
	waitFor(t, 5*time.Second, "the session", func() bool { return ts.srv.Sessions().Len() == 3 })
	var slow *Session
	for _, s := range ts.srv.Sessions().All() {
		if s.Identity() == "slow" {
			slow = s
		}
	}
	fillQueue(t, ts, conn, slow, cap(slow.ws.queue))
	if n := ts.counter(t, "media_slow_client_disconnects", "", ""); n != 0 {
		t.Fatalf("disconnected as slow before the queue was full (%d)", n)
	}
	full := time.Now()
	if _, err := conn.NetConn().Write(clientFrame([]byte(`{"type":"one-more"}`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "slow client disconnected", func() bool {
		return ts.counter(t, "media_slow_client_disconnects", "", "") == 1
	})
	if took := time.Since(full); took > 1500*time.Millisecond {
		t.Errorf("slow client cut %s after its queue was full; want within the 1s send timeout", took)
	}
	waitFor(t, 5*time.Second, "slow session removed", func() bool { return ts.srv.Sessions().Len() == 2 })
	room.stillFlowing(t, "alice still receives bob")
}
