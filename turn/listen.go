package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/media-service/media-service/internal/envconfig"
)

// Connection refusal reasons, the reason attribute of media_turn_conn_refusals.
const (
	connTotal   = "total"         // MaxConns reached
	connPerIP   = "per_ip"        // MaxConnsPerIP reached for the source
	connNoAlloc = "no_allocation" // closed: no allocation within ConnAllocateTimeout
)

// udpBufferSize is the socket buffer the TURN/UDP listener asks for.
const udpBufferSize = 4 << 20

// listeners are the bound sockets, each nil when its transport is off.
type listeners struct {
	udp *udpListener
	tcp *tcpListener
	tls *tcpListener
}

// bind binds every configured listener, so that a taken port fails at once.
func (s *Server) bind() error {
	cfg := s.cfg
	if cfg.UDPPort >= 0 {
		addr := net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.UDPPort))
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("turn: listen udp %s (%s): %w", addr, envconfig.Name(&cfg, &cfg.UDPPort), err)
		}
		if uc, ok := pc.(*net.UDPConn); ok {
			// Every client's TURN/UDP traffic shares this one socket: ask for
			// buffers that ride over bursts. The kernel caps them at its
			// rmem_max/wmem_max; a smaller buffer still works.
			_ = uc.SetReadBuffer(udpBufferSize)
			_ = uc.SetWriteBuffer(udpBufferSize)
		}
		s.ln.udp = &udpListener{PacketConn: pc, s: s, batch: newBatchReader(pc), out: newBatchWriter(pc.(*net.UDPConn))}
	}
	if cfg.TCPPort >= 0 {
		ln, err := s.listenTCP(transportTCP, envconfig.Name(&cfg, &cfg.TCPPort), cfg.TCPPort)
		if err != nil {
			return err
		}
		s.ln.tcp = ln
	}
	if cfg.TLSEnabled() {
		ln, err := s.listenTCP(transportTLS, envconfig.Name(&cfg, &cfg.TLSPort), cfg.TLSPort)
		if err != nil {
			return err
		}
		s.ln.tls = ln
	}
	return nil
}

func (s *Server) listenTCP(transport, name string, port int) (*tcpListener, error) {
	addr := net.JoinHostPort(s.cfg.TCPBindAddr, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("turn: listen tcp %s (%s): %w", addr, name, err)
	}
	return &tcpListener{Listener: ln, s: s, transport: transport}, nil
}

// close closes every bound listener.
func (l listeners) close() {
	if l.udp != nil {
		l.udp.Close()
	}
	if l.tcp != nil {
		l.tcp.Close()
	}
	if l.tls != nil {
		l.tls.Close()
	}
}

// maxPause bounds the wait after a listener error that is not its close.
const maxPause = time.Second

// pause rides over a transient listener error (out of file descriptors,
// say): Pion's read and accept loops end on any error, which would stop
// the transport for good. It waits a little longer each time, up to
// maxPause, and returns the wait, or 0 when the error is the listener's
// close (or the server closes meanwhile) and the loop must end.
func (s *Server) pause(transport string, err error, prev time.Duration) time.Duration {
	if errors.Is(err, net.ErrClosed) {
		return 0
	}
	next := min(max(2*prev, 5*time.Millisecond), maxPause)
	s.log.Warn("turn_listener_error", "transport", transport, "err", err, "retry_in", next.String())
	t := time.NewTimer(next)
	defer t.Stop()
	select {
	case <-t.C:
		return next
	case <-s.closing:
		return 0
	}
}

// udpListener is the TURN/UDP socket as Pion reads it. It drops requests
// beyond the per-source rate limit from clients without an allocation
// before Pion sees (and answers) them, and marks the end of Pion's read
// loop for Close. On Linux it reads in batches (recvbatch_linux.go); its
// writes, from every allocation's goroutine, leave in batches when they
// come together (sendbatch.go).
type udpListener struct {
	net.PacketConn
	s     *Server
	batch *batchReader // nil: one datagram per read
	out   *batchWriter

	doneOnce sync.Once
}

// ReadFrom returns the next datagram the rate limit admits and that is
// not ChannelData on a channel it relays itself (channels.go). Pion reads
// with a buffer of its largest datagram, and drops one that fills it: so
// does ReadFrom.
func (l *udpListener) ReadFrom(b []byte) (int, net.Addr, error) {
	var pause time.Duration
	for {
		n, ap, addr, err := l.read(b)
		if err != nil {
			if pause = l.s.pause(transportUDP, err, pause); pause > 0 {
				continue
			}
			l.doneOnce.Do(l.s.loops.Done)
			return n, addr, err
		}
		pause = 0
		if n < len(b) && l.relayChannelData(b[:n], ap, addr) {
			continue
		}
		if l.admit(b[:n], addr) {
			return n, addr, nil
		}
		l.s.metrics.rateLimit(transportUDP)
	}
}

// relayChannelData relays b, a client's datagram, to its peer when it is
// ChannelData on a channel of the client's allocation, as Pion would
// (a failed write is an allocation error for the source, as Pion reports
// it), and reports whether it did.
func (l *udpListener) relayChannelData(b []byte, from netip.AddrPort, addr net.Addr) bool {
	number, data, ok := parseChannelData(b)
	if !ok {
		return false
	}
	c := l.s.channels.get(from)
	if c == nil {
		return false
	}
	cs := c.chans.Load()
	if cs == nil {
		return false
	}
	ch, ok := cs.byNumber(number)
	if !ok {
		return false
	}
	if _, err := c.WriteTo(data, ch.peerAddr); err != nil {
		l.s.ledger.release(allocKey{transportUDP, addr.String()})
	}
	return true
}

// WriteTo sends a datagram to a client, batched with the concurrent ones.
func (l *udpListener) WriteTo(b []byte, addr net.Addr) (int, error) {
	return l.out.WriteTo(b, addr)
}

// read returns the next datagram and its source, as a net.Addr (for
// Pion) and unmapped.
func (l *udpListener) read(b []byte) (int, netip.AddrPort, net.Addr, error) {
	if l.batch != nil {
		return l.batch.readFrom(b)
	}
	n, addr, err := l.PacketConn.ReadFrom(b)
	ap, _ := addrPort(addr)
	return n, ap, addr, err
}

func (l *udpListener) admit(b []byte, addr net.Addr) bool {
	if !isSTUNRequest(b) {
		return true
	}
	ip, ok := addrIP(addr)
	if !ok {
		return false
	}
	if l.s.ledger.has(allocKey{transportUDP, addr.String()}) {
		return true
	}
	return l.s.limiter.allow(ip)
}

// tcpListener is a TURN/TCP or TLS listener as Pion accepts from it. It
// bounds the open connections in total and per source IP, and hands out
// conns with an idle timeout, which Close can end.
type tcpListener struct {
	net.Listener
	s         *Server
	transport string

	doneOnce sync.Once
}

// Accept returns the next connection within the bounds; one beyond them
// is closed at once.
func (l *tcpListener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if pause = l.s.pause(l.transport, err, pause); pause > 0 {
				continue
			}
			l.doneOnce.Do(l.s.loops.Done)
			return nil, err
		}
		pause = 0
		ip, _ := addrIP(c.RemoteAddr())
		if reason := l.s.conns.acquire(ip); reason != "" {
			c.Close()
			l.s.metrics.connRefused(l.transport, reason)
			continue
		}
		tc := &trackedConn{Conn: c, s: l.s, ip: ip}
		tc.allocTimer.Store(time.AfterFunc(l.s.cfg.ConnAllocateTimeout, func() { l.closeUnallocated(tc) }))
		l.s.loops.Add(1)        // done by tc's first failed read or its close
		if !l.s.conns.add(tc) { // closing
			tc.Close()
			continue
		}
		return tc, nil
	}
}

// closeUnallocated closes c unless it holds an allocation by now.
func (l *tcpListener) closeUnallocated(c *trackedConn) {
	if l.s.ledger.has(allocKey{l.transport, c.RemoteAddr().String()}) {
		return
	}
	l.s.metrics.connRefused(l.transport, connNoAlloc)
	c.Close()
}

// tlsListener serves TLS over l; the handshake runs in Pion's per-conn
// goroutine on its first read, bounded by the idle timeout.
func tlsListener(l *tcpListener, cfg *tls.Config) net.Listener {
	return tls.NewListener(l, cfg)
}

// trackedConn is one accepted TURN/TCP or TLS connection. Every read
// pushes the read deadline ConnIdleTimeout ahead, so a connection that
// goes silent is closed. Its first failed read or its close, whichever
// comes first, marks the end of Pion's goroutine for the conn: after
// either, that goroutine only cleans up.
type trackedConn struct {
	net.Conn
	s          *Server
	ip         netip.Addr
	allocTimer atomic.Pointer[time.Timer] // closes the conn if it has not allocated in time

	doneOnce  sync.Once
	closeOnce sync.Once
}

// Read reads with the idle timeout.
func (c *trackedConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.s.cfg.ConnIdleTimeout)); err != nil {
		c.doneOnce.Do(c.s.loops.Done)
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if err != nil {
		c.doneOnce.Do(c.s.loops.Done)
	}
	return n, err
}

// Close closes the connection and gives back its slot.
func (c *trackedConn) Close() error {
	if t := c.allocTimer.Load(); t != nil {
		t.Stop()
	}
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.s.conns.remove(c) })
	c.doneOnce.Do(c.s.loops.Done)
	return err
}

// connTable bounds and tracks the open TCP and TLS connections.
type connTable struct {
	max, maxPerIP int

	mu     sync.Mutex // guards everything below
	closed bool
	total  int
	perIP  map[netip.Addr]int
	open   map[*trackedConn]bool
}

func newConnTable(max, maxPerIP int) *connTable {
	return &connTable{max: max, maxPerIP: maxPerIP, perIP: map[netip.Addr]int{}, open: map[*trackedConn]bool{}}
}

// acquire takes a slot for a connection from ip, or returns the refusal
// reason.
func (t *connTable) acquire(ip netip.Addr) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.total >= t.max:
		return connTotal
	case t.perIP[ip] >= t.maxPerIP:
		return connPerIP
	}
	t.total++
	t.perIP[ip]++
	return ""
}

// add tracks c, whose slot is taken, unless the table is closed.
func (t *connTable) add(c *trackedConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open[c] = true
	return !t.closed
}

// remove forgets c and gives back its slot.
func (t *connTable) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.open, c)
	t.total--
	if t.perIP[c.ip]--; t.perIP[c.ip] <= 0 {
		delete(t.perIP, c.ip)
	}
}

// closeAll closes every open connection and refuses new ones.
func (t *connTable) closeAll() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	for _, c := range keys(&t.mu, t.open) {
		c.Close()
	}
}

// keys returns the keys of a set guarded by mu, so that they can be
// closed without holding mu (closing takes it again to forget them).
func keys[K comparable](mu *sync.Mutex, set map[K]bool) []K {
	mu.Lock()
	defer mu.Unlock()
	out := make([]K, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}
