package connlimit

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// Reason says which bound refused a connection. Its values are the
// attribute values operators see in metrics: keep them stable.
type Reason string

// The bounds a Listener refuses a connection by.
const (
	ReasonPerIP Reason = "per_ip" // the client address's bucket is at Limits.PerAddr
	ReasonTotal Reason = "total"  // the listener is at Limits.Total
)

// Reasons are every Reason, for pre-registering metrics series.
var Reasons = []Reason{ReasonPerIP, ReasonTotal}

// Limits configures a Listener.
type Limits struct {
	// PerAddr bounds the open connections of one client address bucket
	// (see Bucket); 0 is no bound.
	PerAddr int
	// Total bounds the open connections in all; 0 is no bound.
	Total int
	// Counted, when set, is called with +1 when a connection is accepted
	// within the bounds and -1 when it closes: a gauge of open
	// connections.
	Counted func(delta int64)
	// Refused, when set, is called for every connection reset by a bound.
	Refused func(Reason)
}

// Listener is a TCP listener under Limits. A connection counts from its
// accept, before a byte of it is read, so it bounds what no request-level
// check can: clients that open connections and never send a request, or
// send one and then go silent. Its slot comes back when the connection
// closes, whoever closes it: net/http, or a WebSocket that took it over.
//
// Accept never waits for a slot to free up: a connection over a bound is
// reset at once and the next one accepted, so a flood from one address
// does not hold up other clients. Nothing is logged per refusal (a flood
// would flood the log); Limits.Refused hears of each.
type Listener struct {
	*net.TCPListener
	lim     Limits
	perAddr *Addrs       // open connections per address bucket
	open    atomic.Int64 // open connections, refused ones never counted
}

// NewListener puts ln under lim.
func NewListener(ln *net.TCPListener, lim Limits) *Listener {
	if lim.Counted == nil {
		lim.Counted = func(int64) {}
	}
	if lim.Refused == nil {
		lim.Refused = func(Reason) {}
	}
	return &Listener{TCPListener: ln, lim: lim, perAddr: NewAddrs(lim.PerAddr)}
}

// Accept returns the next connection within the bounds.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			return nil, err
		}
		var peer netip.Addr
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			peer = a.AddrPort().Addr()
		}
		k := Bucket(peer)
		if reason := l.acquire(k); reason != "" {
			l.lim.Refused(reason)
			reset(c)
			continue
		}
		return &conn{TCPConn: c, l: l, key: k}, nil
	}
}

// Open is how many accepted connections are open now.
func (l *Listener) Open() int64 { return l.open.Load() }

// Held is how many open connections address bucket k holds now.
func (l *Listener) Held(k netip.Prefix) int { return l.perAddr.Held(k) }

// acquire takes a slot for a connection from bucket k, or returns the
// refusal reason.
func (l *Listener) acquire(k netip.Prefix) Reason {
	if !l.perAddr.Acquire(k) {
		return ReasonPerIP
	}
	if n := l.open.Add(1); l.lim.Total > 0 && n > int64(l.lim.Total) {
		l.open.Add(-1)
		l.perAddr.Release(k)
		return ReasonTotal
	}
	l.lim.Counted(1)
	return ""
}

// release gives back one connection's slot in bucket k.
func (l *Listener) release(k netip.Prefix) {
	l.open.Add(-1)
	l.perAddr.Release(k)
	l.lim.Counted(-1)
}

// reset closes a refused connection with a reset rather than a FIN: the
// client learns at once, and the server keeps no TIME_WAIT state for it,
// so a flood of refusals costs nothing once they are closed.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// conn is an accepted connection holding a slot of its Listener. It has
// the methods of the *net.TCPConn it embeds, so code that asks for
// half-close, socket buffers or sendfile through an interface gets them
// as on the bare socket (a type assertion to *net.TCPConn does not: ask
// by interface). Close gives the slot back exactly once, however often
// it is called: net/http closes the connections it serves, and when a
// WebSocket takes one over, Hijack hands over this very conn, so the
// WebSocket's close releases it.
type conn struct {
	*net.TCPConn
	l        *Listener
	key      netip.Prefix
	released atomic.Bool
}

// Close closes the connection and releases its slot on the first call.
func (c *conn) Close() error {
	err := c.TCPConn.Close()
	if c.released.CompareAndSwap(false, true) {
		c.l.release(c.key)
	}
	return err
}
