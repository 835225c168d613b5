package sfu

import (
	"net"
	"sync"
)

// tcpListener is the ICE-TCP mux's listener. Closing it also closes every
// connection it accepted that is still open.
//
// Pion's TCP mux, on Close, waits for each accepted connection to send its
// first STUN message or to reach the 30 s first-message timeout. A
// connection that stays silent (a browser's TCP candidate pair it never
// checks, a port scanner, a peer that holds the port on purpose) would
// otherwise hold Engine.Close, and so the drain, until the watchdog
// ends the process.
type tcpListener struct {
	net.Listener

	mu     sync.Mutex // guards conns and closed
	conns  map[*tcpConn]struct{}
	closed bool
}

func newTCPListener(ln net.Listener) *tcpListener {
	return &tcpListener{Listener: ln, conns: map[*tcpConn]struct{}{}}
}

// Accept returns the next connection, tracked until it is closed.
func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &tcpConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed { // accepted while Close ran: nobody would close it
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// accepted is how many accepted connections are still open.
func (l *tcpListener) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Close stops accepting and closes every accepted connection still open,
// which ends the mux's reads on them.
func (l *tcpListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	conns := l.conns
	l.conns, l.closed = nil, true
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

// tcpConn is an accepted connection that its listener forgets once closed.
type tcpConn struct {
	net.Conn
	l *tcpListener
}

func (c *tcpConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
