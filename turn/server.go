// Package turn is the TURN relay embedded in every media-service instance
// (RFC 8656, served by github.com/pion/turn/v4), so that clients behind
// symmetric NATs and UDP-blocking firewalls still get their media without
// a separate coturn deployment.
//
// What it adds to Pion is the hardening an internet-facing relay needs:
//
//   - Credentials in the TURN REST API scheme (credentials.go): short-lived,
//     minted from a shared secret, checked without a user store.
//   - A peer policy (policy.go): the relay's only legitimate peer is this
//     instance's SFU, so by default it sends nowhere else, and it never
//     reaches loopback, private, link-local, multicast or other special
//     ranges unless an operator opens one explicitly. It is enforced when a
//     permission is asked for and again on every datagram (relay.go).
//   - Relayed media for the SFU's public address goes to its local socket
//     (shortcut.go), so relaying does not depend on the NAT in front of
//     the instance looping datagrams back; with Options.Handoff it goes
//     there in memory, without a trip through the kernel (handoff.go).
//   - The TURN/UDP listener is read with recvmmsg on Linux, and no read
//     of a datagram allocates (recvbatch*.go, relay.go). ChannelData on
//     a channel Pion has bound for a UDP client is relayed by this package
//     on the goroutine that has the datagram, without Pion's per-datagram
//     path (channels.go); the listener's writes leave in sendmmsg batches,
//     one per SFU fan-out for relayed subscribers (sendbatch.go). On
//     Linux the relayed sockets of UDP clients are read by one event
//     loop, as coturn reads them, instead of a goroutine each: a wake-up
//     reads every socket that became ready meanwhile (relayloop_linux.go).
//   - Quotas on allocations per identity and per instance (quota.go), a
//     per-source rate limit on unauthenticated UDP requests against
//     amplification (ratelimit.go), and bounds on TCP connections
//     (listen.go).
//   - A drain: Drain refuses new allocations, Close ends the rest.
//   - media_turn_* metrics (metrics.go).
package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/media-service/media-service/internal/handoff"
	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// closeWait bounds how long Close waits for Pion's goroutines to notice
// their sockets are closed. They need microseconds; the bound only keeps a
// wedged one from holding up the process exit.
const closeWait = 5 * time.Second

// Options carries what the relay is handed rather than configured with.
type Options struct {
	// Log receives the relay's events. Required.
	Log *slog.Logger
	// Meter creates the relay's instruments. Default: a no-op meter.
	Meter metric.Meter
	// Media are this instance's own media sockets: the SFU's ICE UDP and
	// TCP mux addresses (a typed nil is skipped). They are the peers the
	// relay may reach by default. An unspecified IP stands for every
	// address of this host.
	Media []net.Addr
	// Handoff, when set, connects the relay to the SFU's UDP socket (one
	// of Media) in memory: datagrams between a client and that socket
	// skip the kernel (handoff.go). Every check and count is the same.
	Handoff *handoff.Switch
}

// Server is the embedded TURN relay. New binds its listeners, Run serves
// until its context ends or Close, Drain refuses new allocations, and
// Close ends every allocation and listener and waits for Pion's
// goroutines. ICEServers may be called at any time, from any goroutine.
type Server struct {
	cfg       Config
	log       *slog.Logger
	creds     credentials
	policy    *peerPolicy
	shortcut  shortcut
	handoff   *handoff.Switch         // nil: relayed datagrams all take the kernel
	toMedia   map[netip.AddrPort]bool // where the kernel would deliver to the handoff's socket
	mediaPeer netip.AddrPort          // where the handoff's socket is seen from before a client names it
	ledger    *ledger
	limiter   *limiter
	conns     *connTable
	metrics   *metrics
	tlsConfig *tls.Config
	now       func() time.Time // the clock credentials are checked against; tests set it

	relayIP   net.IP
	relayBind string
	urls      []string // the turn: URLs handed to clients

	ln       listeners
	loops    sync.WaitGroup // Pion's read loops: one per listener and per TCP conn
	draining atomic.Bool

	relayMu  sync.Mutex // guards relays, byRelay and closed
	relays   map[*relayConn]bool
	byRelay  map[netip.AddrPort]*relayConn // the same, by relayed address
	closed   bool
	channels channelIndex // UDP clients' relayConns with channels (channels.go)
	loop     *relayLoop   // reads UDP clients' relayed sockets (relayloop_linux.go); nil: Pion's readers do

	running   atomic.Bool
	closeOnce sync.Once
	closing   chan struct{} // closed by Close
	stopped   chan struct{} // closed when Run has returned
}

// New validates cfg and binds every listener, so that a taken port fails
// here, before anything is served.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		return nil, errors.New("turn: Options.Log is required")
	}
	if opts.Meter == nil {
		opts.Meter = noop.NewMeterProvider().Meter("turn")
	}
	s := &Server{
		cfg:     cfg,
		log:     opts.Log.With("component", "turn"),
		ledger:  newLedger(cfg.MaxAllocationsPerIdentity, cfg.MaxAllocations),
		conns:   newConnTable(cfg.MaxConns, cfg.MaxConnsPerIP),
		now:     time.Now,
		relays:  map[*relayConn]bool{},
		byRelay: map[netip.AddrPort]*relayConn{},
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	s.limiter = newLimiter(cfg.UnauthRate, cfg.UnauthBurst, func() time.Time { return s.now() })
	if err := s.setup(opts); err != nil {
		return nil, err
	}
	if err := s.bind(); err != nil {
		s.ln.close()
		s.metrics.reg.Unregister()
		return nil, err
	}
	if s.ln.udp != nil {
		var err error
		if s.loop, err = newRelayLoop(s.ln.udp.out); err != nil {
			s.ln.close()
			s.metrics.reg.Unregister()
			return nil, fmt.Errorf("turn: relay loop: %w", err)
		}
	}
	s.urls = s.publicURLs()
	if s.handoff != nil && s.ln.udp != nil {
		s.handoff.SetBatch(s.ln.udp.out)
	}
	if cfg.SecretGenerated() {
		s.log.Info("turn_secret_generated", "detail", "no MEDIA_TURN_SECRET set: TURN credentials are signed with a random secret of this process, so only this instance can mint them")
	}
	return s, nil
}

// setup builds everything New needs before binding.
func (s *Server) setup(opts Options) error {
	var err error
	if s.creds, err = newCredentials(s.cfg); err != nil {
		return err
	}
	if s.cfg.TLSEnabled() {
		cert, err := s.cfg.certificate()
		if err != nil {
			return err
		}
		s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	hostIPs := interfaceIPs()
	s.relayIP, s.relayBind = relayAddrs(s.cfg, hostIPs)
	allow, _ := parsePrefixes(s.cfg.AllowPeers) // validated
	s.policy = newPeerPolicy(opts.Media, publicIPs(s.cfg), hostIPs, allow)
	relayIP, _ := netip.AddrFromSlice(s.relayIP)
	s.shortcut = newShortcut(opts.Media, publicIPs(s.cfg), hostIPs, relayIP.Unmap())
	s.handoff, s.toMedia = opts.Handoff, mediaDestinations(opts.Handoff, hostIPs, relayIP.Unmap())
	s.mediaPeer = mediaPeer(opts.Handoff, s.shortcut, relayIP.Unmap())
	if len(s.policy.ownAddrs) == 0 && len(allow) == 0 {
		s.log.Warn("turn_no_peers", "detail", "no media addresses given and MEDIA_TURN_ALLOW_PEERS empty: the relay can reach no peer")
	}
	var switchDrops func() int64
	if opts.Handoff != nil {
		switchDrops = opts.Handoff.Dropped
	}
	s.metrics, err = newMetrics(opts.Meter, s.ledger.active, switchDrops)
	return err
}

// UDPAddr is the bound TURN/UDP address, or nil when off.
func (s *Server) UDPAddr() *net.UDPAddr {
	if s.ln.udp == nil {
		return nil
	}
	return s.ln.udp.LocalAddr().(*net.UDPAddr)
}

// TCPAddr is the bound TURN/TCP address, or nil when off.
func (s *Server) TCPAddr() *net.TCPAddr { return tcpAddr(s.ln.tcp) }

// TLSAddr is the bound TURN-over-TLS address, or nil when off.
func (s *Server) TLSAddr() *net.TCPAddr { return tcpAddr(s.ln.tls) }

func tcpAddr(l *tcpListener) *net.TCPAddr {
	if l == nil {
		return nil
	}
	return l.Addr().(*net.TCPAddr)
}

// ICEServers returns this relay's TURN URLs with a fresh credential for
// identity, valid for new allocations during the credential TTL. It
// returns nil for an empty identity, which no credential may carry.
func (s *Server) ICEServers(identity string) []ICEServer {
	if identity == "" {
		return nil
	}
	user, pass := s.creds.mint(identity, s.now())
	return []ICEServer{{URLs: slices.Clone(s.urls), Username: user, Credential: pass}}
}

// Drain refuses new allocations from now on (508 Insufficient Capacity);
// live allocations keep relaying until Close. It is idempotent.
func (s *Server) Drain() {
	if !s.draining.Swap(true) {
		s.log.Info("turn_draining", "allocations", s.ledger.count())
	}
}

// Run serves until ctx is done or Close is called, then ends every
// allocation and listener, and returns once Pion's goroutines have.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("turn: Run called twice")
	}
	defer close(s.stopped)
	s.loop.start()
	servers, err := s.start()
	if err == nil {
		select {
		case <-ctx.Done():
		case <-s.closing:
		}
	}
	s.shutdown(servers)
	return err
}

// Close ends every allocation and listener and waits for Run to return.
// It is idempotent. Without Run it only releases the listeners.
func (s *Server) Close() error {
	first := false
	s.closeOnce.Do(func() { close(s.closing); first = true })
	if s.running.Load() {
		<-s.stopped
		return nil
	}
	if first {
		s.draining.Store(true)
		s.ln.close()
		s.loop.close()
	}
	return nil
}

// start runs one Pion server per transport, so that every callback knows
// the transport it serves without looking at addresses.
func (s *Server) start() ([]*pionturn.Server, error) {
	var servers []*pionturn.Server
	add := func(transport string, pc net.PacketConn, ln net.Listener) error {
		s.loops.Add(1) // done when the listener's read loop fails
		srv, err := pionturn.NewServer(s.pionConfig(transport, pc, ln))
		if err != nil {
			s.loops.Done()
			return fmt.Errorf("turn: start %s server: %w", transport, err)
		}
		servers = append(servers, srv)
		return nil
	}
	var err error
	if s.ln.udp != nil {
		err = add(transportUDP, s.ln.udp, nil)
	}
	if s.ln.tcp != nil && err == nil {
		err = add(transportTCP, nil, s.ln.tcp)
	}
	if s.ln.tls != nil && err == nil {
		err = add(transportTLS, nil, tlsListener(s.ln.tls, s.tlsConfig))
	}
	if err == nil {
		s.log.Info("turn_started", "urls", s.urls, "relay_ip", s.relayIP.String())
	}
	return servers, err
}

func (s *Server) pionConfig(transport string, pc net.PacketConn, ln net.Listener) pionturn.ServerConfig {
	gen := &relayGenerator{s: s, transport: transport}
	cfg := pionturn.ServerConfig{
		Realm:         s.cfg.Realm,
		AuthHandler:   s.authHandler(transport),
		QuotaHandler:  s.quotaHandler(transport),
		EventHandler:  s.eventHandler(transport),
		LoggerFactory: quietPion(),
	}
	if pc != nil {
		cfg.PacketConnConfigs = []pionturn.PacketConnConfig{{
			PacketConn: pc, RelayAddressGenerator: gen, PermissionHandler: s.permissionHandler(transport),
		}}
	} else {
		cfg.ListenerConfigs = []pionturn.ListenerConfig{{
			Listener: ln, RelayAddressGenerator: gen, PermissionHandler: s.permissionHandler(transport),
		}}
	}
	return cfg
}

// quietPion silences Pion's own logger: what it logs is triggered by
// remote peers per packet, and the events that matter are logged and
// counted by this package's callbacks instead.
func quietPion() logging.LoggerFactory {
	return &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled}
}

// shutdown ends everything Run started: no new allocations, the
// listeners (which ends Pion's read loops and, through them, their
// allocations), the TCP conns, any relayed socket left, and then waits.
func (s *Server) shutdown(servers []*pionturn.Server) {
	s.draining.Store(true)
	s.relayMu.Lock()
	s.closed = true
	s.relayMu.Unlock()
	for _, srv := range servers {
		_ = srv.Close() // errors are closes of already closed sockets
	}
	s.ln.close()
	s.conns.closeAll()
	s.closeRelays()
	s.loop.close()
	s.waitIdle()
	// The observable callbacks stay registered: the meter provider's final
	// flush, after the drain, must still read the last values.
	s.log.Info("turn_stopped")
}

// closeRelays closes every relayed socket still open: Pion closes them
// through its allocation managers, but an allocation being created while
// its manager closes would escape that.
func (s *Server) closeRelays() {
	for _, c := range keys(&s.relayMu, s.relays) {
		c.Close()
	}
}

// waitIdle waits until Pion's read loops have ended and every allocation
// has been deleted (each allocation's goroutine deletes it as it ends),
// for at most closeWait.
func (s *Server) waitIdle() {
	loops := make(chan struct{})
	go func() { s.loops.Wait(); close(loops) }()
	deadline := time.NewTimer(closeWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	loopsDone := false
	for {
		select {
		case <-loops:
			loopsDone = true
			loops = nil
		case <-tick.C:
		case <-deadline.C:
			s.log.Warn("turn_close_incomplete", "allocations", s.ledger.count())
			return
		}
		if loopsDone && s.ledger.count() == 0 {
			return
		}
	}
}

// track remembers a new relayed socket, unless the server is closing.
func (s *Server) track(c *relayConn) bool {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	if s.closed {
		return false
	}
	s.relays[c] = true
	s.byRelay[c.relay] = c
	return true
}

func (s *Server) untrack(c *relayConn) {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	delete(s.relays, c)
	if s.byRelay[c.relay] == c {
		delete(s.byRelay, c.relay)
	}
}

// quotaHandler is Pion's QuotaHandler for one transport: it reserves a
// slot in the ledger or refuses with 486 (Allocation Quota Reached).
func (s *Server) quotaHandler(transport string) pionturn.QuotaHandler {
	return func(username, _ string, src net.Addr) bool {
		_, identity, _ := parseUsername(username) // authenticated already
		if reason := s.ledger.reserve(allocKey{transport, src.String()}, identity); reason != "" {
			s.metrics.allocationRefused(transport, reason)
			s.log.Debug("turn_allocation_refused", "transport", transport, "reason", reason)
			return false
		}
		return true
	}
}

// eventHandler keeps the ledger and the metrics in step with Pion's
// allocations.
func (s *Server) eventHandler(transport string) pionturn.EventHandler {
	h := pionturn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, _, _, _ string, verdict bool) {
			if !verdict {
				s.authFailed(transport, authBadIntegrity, src)
			}
		},
		OnAllocationCreated: func(src, _ net.Addr, _, username, _ string, _ net.Addr, _ int) {
			_, identity, _ := parseUsername(username)
			s.ledger.confirm(allocKey{transport, src.String()}, username, identity)
			s.metrics.allocationCreated(transport)
		},
		OnAllocationDeleted: func(src, _ net.Addr, _, _, _ string) {
			s.ledger.remove(allocKey{transport, src.String()})
		},
		OnAllocationError: func(src, _ net.Addr, _, _ string) {
			s.ledger.release(allocKey{transport, src.String()})
		},
	}
	if transport == transportUDP {
		s.channelEvents(&h)
	}
	return h
}

// publicURLs are the turn: URLs of every transport that is on.
func (s *Server) publicURLs() []string {
	host := publicHost(s.cfg, interfaceIPs())
	var urls []string
	if a := s.UDPAddr(); a != nil {
		urls = append(urls, "turn:"+net.JoinHostPort(host, strconv.Itoa(a.Port))+"?transport=udp")
	}
	if a := s.TCPAddr(); a != nil {
		urls = append(urls, "turn:"+net.JoinHostPort(host, strconv.Itoa(a.Port))+"?transport=tcp")
	}
	if a := s.TLSAddr(); a != nil {
		port := a.Port
		if s.cfg.TLSPublicPort != 0 {
			port = s.cfg.TLSPublicPort
		}
		urls = append(urls, "turns:"+net.JoinHostPort(host, strconv.Itoa(port))+"?transport=tcp")
	}
	return urls
}

// publicHost is the host of the turn: URLs: MEDIA_TURN_PUBLIC_HOST, else
// the first public IP, else the UDP bind address when it is one IP, else
// this host's first global unicast address (IPv4 first), else loopback.
func publicHost(cfg Config, hostIPs []netip.Addr) string {
	if cfg.PublicHost != "" {
		return cfg.PublicHost
	}
	if ips := publicIPs(cfg); len(ips) > 0 {
		return ips[0].String()
	}
	if ip, err := netip.ParseAddr(cfg.BindAddr); err == nil && !ip.IsUnspecified() {
		return ip.String()
	}
	for _, want4 := range []bool{true, false} {
		for _, ip := range hostIPs {
			if ip.IsGlobalUnicast() && ip.Is4() == want4 {
				return ip.String()
			}
		}
	}
	return "127.0.0.1"
}

// relayAddrs are the relayed address given to clients and the address
// relayed sockets bind: MEDIA_TURN_RELAY_IP, else the UDP bind address
// when it is one IPv4, else this host's first non-loopback IPv4, else
// 127.0.0.1; the bind address defaults to the relay IP.
func relayAddrs(cfg Config, hostIPs []netip.Addr) (net.IP, string) {
	ip, err := netip.ParseAddr(cfg.RelayIP)
	if err != nil {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if b, err := netip.ParseAddr(cfg.BindAddr); err == nil && b.Unmap().Is4() && !b.IsUnspecified() {
			ip = b
		} else {
			for _, h := range hostIPs {
				if h.Is4() && !h.IsLoopback() && !h.IsLinkLocalUnicast() {
					ip = h
					break
				}
			}
		}
	}
	ip = ip.Unmap()
	bind := cfg.RelayBindAddr
	if bind == "" {
		bind = ip.String()
	}
	return net.IP(ip.AsSlice()), bind
}

// publicIPs parses MEDIA_PUBLIC_IP (validated).
func publicIPs(cfg Config) []netip.Addr {
	var ips []netip.Addr
	for _, s := range cfg.PublicIPs {
		if ip, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	return ips
}

// interfaceIPs are this host's addresses. An error leaves the list empty:
// then only explicit addresses count as the host's own.
func interfaceIPs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var ips []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ips = append(ips, ip.Unmap())
			}
		}
	}
	return ips
}
