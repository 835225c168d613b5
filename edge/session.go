package edge

import (
	"sync"
	"time"
)

// Session is one participant's connection: its signaling client, its
// PeerConnections and its tracks. It is owned by the Server's session
// manager from join until Close, which removes it.
//
// The media core fills in the signaling and PeerConnection parts.
type Session struct {
	id       string
	sessions *Sessions // the manager that holds it

	closeOnce sync.Once
	done      chan struct{} // closed when the session has fully closed
}

func newSession(id string, m *Sessions) *Session {
	return &Session{id: id, sessions: m, done: make(chan struct{})}
}

// ID returns the session's id (the participant id).
func (s *Session) ID() string { return s.id }

// Done is closed once the session has fully closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// notifyDraining tells the client the instance is draining and by when it
// must have left.
func (s *Session) notifyDraining(deadline time.Time) {}

// Close ends the session for reason and waits for its parts to close. It
// is idempotent.
func (s *Session) Close(reason string) {
	s.closeOnce.Do(func() {
		s.sessions.Remove(s.id)
		close(s.done)
	})
	<-s.done
}
