package sfu

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"go.opentelemetry.io/otel/metric/noop"
)

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantVar string
	}{
		{"udp port too big", Config{UDPPort: 70000}, "MEDIA_ICE_UDP_PORT"},
		{"udp port negative", Config{UDPPort: -1}, "MEDIA_ICE_UDP_PORT"},
		{"tcp port below off", Config{TCPPort: -2}, "MEDIA_ICE_TCP_PORT"},
		{"public ip not an ip", Config{PublicIPs: []string{"example.com"}}, "MEDIA_PUBLIC_IP"},
		{"nack buffer not a power of two", Config{RetransmitPackets: 500}, "MEDIA_NACK_BUFFER"},
		{"nack buffer too big", Config{RetransmitPackets: 8192}, "MEDIA_NACK_BUFFER"},
		{"negative failed timeout", Config{ICEFailedTimeout: -time.Second}, "MEDIA_ICE_FAILED_TIMEOUT"},
		{"negative pli interval", Config{PLIInterval: -time.Second}, "MEDIA_PLI_INTERVAL"},
		{"negative nack rate", Config{RetransmitRate: -1}, "MEDIA_NACK_RATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(tc.cfg, noop.NewMeterProvider().Meter("test"), nil)
			if err == nil {
				_ = e.Close()
				t.Fatalf("New(%+v) = nil error; want one naming %s", tc.cfg, tc.wantVar)
			}
			if !strings.Contains(err.Error(), tc.wantVar) {
				t.Errorf("New(%+v) = %q; want it to name %s", tc.cfg, err, tc.wantVar)
			}
		})
	}
}

// TestCloseReleasesPorts: after Close both ports can be bound again, and a
// second Close is harmless.
func TestCloseReleasesPorts(t *testing.T) {
	e, err := New(Config{BindAddr: "127.0.0.1"}, noop.NewMeterProvider().Meter("test"), nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	udp, tcp := e.UDPAddr(), e.TCPAddr()
	if udp.Port == 0 || tcp == nil || tcp.Port == 0 {
		t.Fatalf("UDPAddr() = %v, TCPAddr() = %v; want bound ports", udp, tcp)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close() = %v; want nil", err)
	}
	uc, err := net.ListenPacket("udp", udp.String())
	if err != nil {
		t.Fatalf("listen udp %s after Close = %v; want the port free", udp, err)
	}
	_ = uc.Close()
	tl, err := net.Listen("tcp", tcp.String())
	if err != nil {
		t.Fatalf("listen tcp %s after Close = %v; want the port free", tcp, err)
	}
	_ = tl.Close()
}

// TestCloseEndsSilentTCPConnections: Close returns promptly, closing them,
// while ICE-TCP connections that never sent their first STUN message are
// open. Pion's mux alone waits 30 s for each (its first-message timeout),
// which held a drain past its watchdog.
func TestCloseEndsSilentTCPConnections(t *testing.T) {
	e, err := New(Config{BindAddr: "127.0.0.1"}, noop.NewMeterProvider().Meter("test"), nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	const silent = 3
	var conns []net.Conn
	for range silent {
		c, err := net.Dial("tcp", e.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for deadline := time.Now().Add(10 * time.Second); e.tcpLn.accepted() < silent; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the mux accepted %d of %d connections within 10s", e.tcpLn.accepted(), silent)
		}
	}

	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	// Well under the 30 s that Pion's mux would wait.
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close() = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close() still blocked after 15s with silent ICE-TCP connections open")
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("connection %d: Read after Close = %d, %v; want EOF (closed by the engine)", i, n, err)
		}
	}
}

// TestTakenPortFails: New fails at once, naming the listen, when its UDP
// port is taken.
func TestTakenPortFails(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.LocalAddr().(*net.UDPAddr).Port
	e, err := New(Config{BindAddr: "127.0.0.1", UDPPort: port, TCPPort: -1}, noop.NewMeterProvider().Meter("test"), nil)
	if err == nil {
		_ = e.Close()
		t.Fatalf("New(UDPPort: %d taken) = nil error; want a listen error", port)
	}
	if !strings.Contains(err.Error(), "listen udp") {
		t.Errorf("New(UDPPort taken) = %q; want it to name the listen", err)
	}
}

// TestTCPOff: TCPPort -1 binds no TCP port.
func TestTCPOff(t *testing.T) {
	h := newHarness(t, Config{TCPPort: -1})
	if a := h.engine.TCPAddr(); a != nil {
		t.Fatalf("TCPAddr() with TCPPort -1 = %v; want nil", a)
	}
}

// offerCandidates gathers a server offer and returns its candidate lines.
func offerCandidates(t *testing.T, e *Engine) []string {
	t.Helper()
	pc := subscriberConn(t, e).PeerConnection()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	var out []string
	for line := range strings.SplitSeq(pc.LocalDescription().SDP, "\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// TestCandidates: host candidates name the mux ports (UDP, and passive
// TCP), never an mDNS name, and the public address replaces the local one
// when configured.
func TestCandidates(t *testing.T) {
	for _, tc := range []struct {
		name          string
		cfg           Config
		wantIP, notIP string
	}{
		{"local address", Config{}, "127.0.0.1", ".local"},
		{"public address", Config{PublicIPs: []string{"203.0.113.7"}}, "203.0.113.7", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			cands := offerCandidates(t, h.engine)
			want := map[string]string{
				"udp": tc.wantIP + " " + strconv.Itoa(h.engine.UDPAddr().Port) + " typ host",
				"tcp": tc.wantIP + " " + strconv.Itoa(h.engine.TCPAddr().Port) + " typ host tcptype passive",
			}
			for proto, w := range want {
				found := false
				for _, c := range cands {
					found = found || (strings.Contains(c, " "+proto+" ") && strings.Contains(c, w))
				}
				if !found {
					t.Errorf("offer candidates = %q; want a %s candidate %q", cands, proto, w)
				}
			}
			for _, c := range cands {
				if strings.Contains(c, tc.notIP) {
					t.Errorf("offer candidate %q contains %q; want none", c, tc.notIP)
				}
			}
		})
	}
}

// TestICETCPFallback: a participant that cannot use UDP reaches the engine
// over the ICE-TCP mux and receives media.
func TestICETCPFallback(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)

	api := clientAPIWith(t, func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	})
	sub := h.newSubscriber(t, api)
	sub.subscribe(t, video)
	r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
	first := pub.video.send(t, 50)
	checkContinuous(t, "video over tcp", r.expect(t, first, 50, pub.video.size))

	pair, err := sub.server.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("GetSelectedCandidatePair() = %v, %v; want a pair", pair, err)
	}
	if pair.Local.Protocol != webrtc.ICEProtocolTCP {
		t.Errorf("selected pair protocol = %s; want tcp", pair.Local.Protocol)
	}
}

// TestNominatesPeerReflexiveAtOnce: when a subscriber's candidates have
// not reached the server (trickle is slower than the client's first
// connectivity check), the server, which controls ICE on the subscriber
// connection, knows the client only as peer-reflexive. It must nominate
// that pair at once: Pion's default waits a full second first, which
// would add a second to most joins.
func TestNominatesPeerReflexiveAtOnce(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	sub := h.newSubscriber(t, clientAPI(t, true))
	if _, err := sub.conn.Subscribe(video); err != nil {
		t.Fatal(err)
	}
	connected := make(chan time.Time, 1)
	sub.server.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			connected <- time.Now()
		}
	})
	start := time.Now()
	sub.negotiateEdited(t, withoutCandidates)
	select {
	case at := <-connected:
		// Pion's default would be at least 1s; leave room for a slow machine.
		if took := at.Sub(start); took >= 900*time.Millisecond {
			t.Fatalf("server ICE connected %s after the answer without candidates; want well under Pion's 1s default", took)
		}
	case <-time.After(waitFor):
		t.Fatalf("server ICE not connected within %s", waitFor)
	}
	pair, err := sub.server.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("GetSelectedCandidatePair() = %v, %v; want a pair", pair, err)
	}
	if pair.Remote.Typ != webrtc.ICECandidateTypePrflx {
		t.Errorf("selected remote candidate type = %s; want prflx (the test relies on it)", pair.Remote.Typ)
	}
}

// withoutCandidates removes the candidate lines from an SDP, as if they
// were still being trickled.
func withoutCandidates(sdp string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(sdp, "\r\n") {
		if line != "" && !strings.HasPrefix(line, "a=candidate:") && line != "a=end-of-candidates" {
			b.WriteString(line + "\r\n")
		}
	}
	return b.String()
}

// TestWildcardBind: bound to every interface (the production default),
// the engine serves loopback participants when loopback candidates are
// on, over IPv4 and dual-stack sockets.
func TestWildcardBind(t *testing.T) {
	for _, bind := range []string{"0.0.0.0", "::"} {
		t.Run(bind, func(t *testing.T) {
			h := newHarness(t, Config{BindAddr: bind, IncludeLoopback: true})
			pub := h.newPublisher(t)
			video, _ := pub.publications(t)
			sub := h.newSubscriber(t, clientAPI(t, true))
			sub.subscribe(t, video)
			r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
			first := pub.video.send(t, 30)
			checkContinuous(t, "video", r.expect(t, first, 30, pub.video.size))
		})
	}
}

// TestICETimeoutsNoticeVanishedPeer: a subscriber whose network vanishes
// (its socket closed, nothing said) is seen as disconnected, then failed,
// after the configured ICE timeouts, so its session can be closed.
func TestICETimeoutsNoticeVanishedPeer(t *testing.T) {
	const disconnected, failed = 600 * time.Millisecond, 600 * time.Millisecond
	h := newHarness(t, Config{ICEDisconnectedTimeout: disconnected, ICEFailedTimeout: failed,
		ICEKeepalive: 100 * time.Millisecond})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := webrtc.NewICEUDPMux(nil, conn)
	t.Cleanup(func() { _ = mux.Close() })
	sub := h.newSubscriber(t, clientAPIWith(t, func(se *webrtc.SettingEngine) {
		se.SetICEUDPMux(mux)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}))
	states := make(chan webrtc.ICEConnectionState, 10)
	sub.server.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) { states <- s })
	sub.subscribe(t, video)
	sub.awaitTracks(t, 1, pub.video)

	_ = conn.Close() // the subscriber's network is gone; no DTLS close_notify
	vanished := time.Now()
	seen := map[webrtc.ICEConnectionState]time.Duration{}
	deadline := time.After(waitFor)
	for seen[webrtc.ICEConnectionStateFailed] == 0 {
		select {
		case s := <-states:
			seen[s] = time.Since(vanished)
		case <-deadline:
			t.Fatalf("server ICE states after the subscriber vanished: %v; want disconnected, then failed", seen)
		}
	}
	if d := seen[webrtc.ICEConnectionStateDisconnected]; d == 0 || d > 3*disconnected {
		t.Errorf("disconnected %s after vanishing; want about %s", d, disconnected)
	}
	if f := seen[webrtc.ICEConnectionStateFailed]; f < disconnected+failed/2 || f > 3*(disconnected+failed) {
		t.Errorf("failed %s after vanishing; want about %s", f, disconnected+failed)
	}
}

// TestTCPBindAddr: the ICE-TCP mux binds its own address when one is set
// (on Fly, TCP cannot bind the address the UDP mux needs), and BindAddr
// otherwise.
func TestTCPBindAddr(t *testing.T) {
	tests := []struct {
		name             string
		bind, tcp        string
		wantUDP, wantTCP string
	}{
		{"follows BindAddr", "127.0.0.1", "", "127.0.0.1", "127.0.0.1"},
		{"its own address", "127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(Config{BindAddr: tt.bind, TCPBindAddr: tt.tcp}, noop.NewMeterProvider().Meter("test"), nil)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer e.Close()
			if got := e.UDPAddr().IP.String(); got != tt.wantUDP {
				t.Errorf("UDPAddr().IP = %s; want %s", got, tt.wantUDP)
			}
			if got := e.TCPAddr().IP.String(); got != tt.wantTCP {
				t.Errorf("TCPAddr().IP = %s; want %s", got, tt.wantTCP)
			}
		})
	}
}

// TestICEConnectsAfterALateStart: a subscriber that hears nothing for
// its first 3 s (its socket drops every datagram: a busy device, a
// lossy start), longer than the 1.4 s Pion's default gives a candidate
// pair before counting it failed for good, still connects once its path
// works, well before the agent would give the connection up (15 s).
func TestICEConnectsAfterALateStart(t *testing.T) {
	h := newHarness(t, Config{})
	pub := h.newPublisher(t)
	video, _ := pub.publications(t)
	sock, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	late := &deafConn{PacketConn: sock, until: time.Now().Add(3 * time.Second)}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: late})
	t.Cleanup(func() { _ = mux.Close() })
	sub := h.newSubscriber(t, clientAPIWith(t, func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEUDPMux(mux)
	}))
	connected := make(chan struct{})
	var once sync.Once
	sub.server.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	sub.subscribe(t, video)
	select {
	case <-connected:
	case <-time.After(waitFor):
		t.Fatalf("server ICE %s %s after the subscriber's socket began to hear; want connected",
			sub.server.ICEConnectionState(), time.Since(late.until).Round(time.Millisecond))
	}
	sub.awaitTracks(t, 1, pub.video)
}

// deafConn drops every datagram it reads until until.
type deafConn struct {
	net.PacketConn
	until time.Time
}

func (c *deafConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.PacketConn.ReadFrom(p)
		if err != nil || time.Now().After(c.until) {
			return n, from, err
		}
	}
}
