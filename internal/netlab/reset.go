package netlab

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Resettable dials TCP connections and keeps the latest, so that a test
// (or a flap of cmd/mediaload churn) can reset it: the peer gets an RST
// and no close, as when a phone's network changes under a WebSocket. Use
// its DialContext as a websocket.Dialer's NetDialContext. The zero value
// is ready; it is safe for concurrent use.
type Resettable struct {
	mu   sync.Mutex
	last *net.TCPConn // guarded by mu
}

// DialContext dials as a net.Dialer does and remembers the connection.
func (r *Resettable) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if tc, ok := c.(*net.TCPConn); ok {
		r.mu.Lock()
		r.last = tc
		r.mu.Unlock()
	}
	return c, err
}

// Reset resets the latest connection dialed.
func (r *Resettable) Reset() error {
	r.mu.Lock()
	c := r.last
	r.mu.Unlock()
	if c == nil {
		return errors.New("netlab: reset: no connection dialed")
	}
	_ = c.SetLinger(0)
	return c.Close()
}
