package edge

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// Connection refusal reasons: the reason attribute of
// media_http_conn_refusals.
const (
	connPerIP = "per_ip" // the client address's bucket is at MaxConnsPerIP
	connTotal = "total"  // the listener is at MaxConns
)

// connLimit bounds the open TCP connections of the HTTP listener (PORT),
// per client address and in total. A connection counts from its accept,
// before a byte of it is read, so it bounds what no request-level check
// can: clients that open connections and never send a request, or send
// one and then go silent. Its slot comes back when the connection closes,
// whoever closes it: net/http, or the WebSocket that took it over.
type connLimit struct {
	perAddr *addrLimit   // open connections per TCP peer bucket; max 0 when off
	max     int64        // open connections in total; 0 is no bound
	open    atomic.Int64 // open connections, refused ones never counted
	metrics *metrics
}

// newConnLimit is the connection bound cfg asks for. Behind a proxy
// (ClientIPHeader set) every TCP peer is the proxy, so the per-address
// bound would cap the whole instance at MaxConnsPerIP: it is left off,
// and only the total applies.
func newConnLimit(cfg Config, m *metrics) *connLimit {
	perIP := cfg.MaxConnsPerIP
	if cfg.ClientIPHeader != "" {
		perIP = 0
	}
	return &connLimit{perAddr: newAddrLimit(perIP, ""), max: int64(cfg.MaxConns), metrics: m}
}

// acquire takes a slot for a connection from bucket k, or returns the
// refusal reason.
func (l *connLimit) acquire(k netip.Prefix) string {
	if !l.perAddr.acquire(k) {
		return connPerIP
	}
	if n := l.open.Add(1); l.max > 0 && n > l.max {
		l.open.Add(-1)
		l.perAddr.release(k)
		return connTotal
	}
	l.metrics.conns.Add(bg, 1)
	return ""
}

// release gives back one connection's slot in bucket k.
func (l *connLimit) release(k netip.Prefix) {
	l.open.Add(-1)
	l.perAddr.release(k)
	l.metrics.conns.Add(bg, -1)
}

// limitListener is the HTTP listener under a connLimit. Accept never
// waits for a slot to free up: a connection over a bound is reset at
// once and the next one accepted, so a flood from one address does not
// hold up the health checks or another client's join. Nothing is logged
// per refusal (a flood would flood the log); media_http_conn_refusals
// counts them.
type limitListener struct {
	*net.TCPListener
	lim *connLimit
}

// limitConns puts ln, a TCP listener from listen, under lim.
func limitConns(ln net.Listener, lim *connLimit) net.Listener {
	return &limitListener{TCPListener: ln.(*net.TCPListener), lim: lim}
}

// Accept returns the next connection within the bounds.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			return nil, err
		}
		var peer netip.Addr
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			peer = a.AddrPort().Addr()
		}
		k := addrBucket(peer)
		if reason := l.lim.acquire(k); reason != "" {
			l.lim.metrics.connRefused(reason)
			resetConn(c)
			continue
		}
		return &limitedConn{TCPConn: c, lim: l.lim, key: k}, nil
	}
}

// resetConn closes a refused connection with a reset rather than a FIN:
// the client learns at once, and the server keeps no TIME_WAIT state for
// it, so a flood of refusals costs nothing once they are closed.
func resetConn(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// limitedConn is an accepted connection holding a slot of its connLimit.
// It has the methods of the *net.TCPConn it embeds, so code that asks for
// half-close, socket buffers or sendfile through an interface gets them
// as on the bare socket (a type assertion to *net.TCPConn does not: ask
// by interface, as wsclient.go does). Close gives the slot back
// exactly once, however often it is called: net/http closes the
// connections it serves, and when a WebSocket takes one over, Hijack
// hands over this very conn, so the session's close releases it.
type limitedConn struct {
	*net.TCPConn
	lim      *connLimit
	key      netip.Prefix
	released atomic.Bool
}

// Close closes the connection and releases its slot on the first call.
func (c *limitedConn) Close() error {
	err := c.TCPConn.Close()
	if c.released.CompareAndSwap(false, true) {
		c.lim.release(c.key)
	}
	return err
}
