package client

import (
	"errors"
	"sync"
)

// errPeersClosed: a negotiation step found the PeerConnections closed.
var errPeersClosed = errors.New("client: peer connections closed")

// peerGuard orders the steps that may create a PeerConnection's ICE agent
// (creating an offer or answer, setting a description, adding a remote
// candidate) against the connections' close. Pion creates the agent
// lazily and its ICEGatherer.close does nothing while there is none: a
// step already past the PeerConnection's closed check when Close runs on
// another goroutine would create an agent after Close, and nobody would
// ever close it (its goroutines leak for the life of the process). Steps
// hold the read lock, so they run concurrently with each other (Pion
// orders each connection's own); close holds the write lock, so a step
// either ends before close, which then closes its agent, or sees closed
// and does nothing.
type peerGuard struct {
	mu     sync.RWMutex
	closed bool // guarded by mu
}

// do runs step unless the connections are closed. step must not call do.
func (g *peerGuard) do(step func() error) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return errPeersClosed
	}
	return step()
}

// close marks the connections closed and runs closeAll once no step is
// running.
func (g *peerGuard) close(closeAll func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	closeAll()
}
