package edge

import (
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

// Close reasons of sessions beyond the protocol's leave reasons: they
// label media_sessions_closed_total and never reach the client.
const (
	reasonClientLeave   = "client_leave"  // the client sent leave
	reasonClientClosed  = "client_closed" // the WebSocket ended from the client's side
	reasonMessageTooBig = "message_too_big"
	reasonInternal      = "internal" // our own failure (PeerConnection setup)
)

// Session is one participant's connection: its signaling client, its two
// PeerConnections (publisher: the client offers and sends; subscriber: the
// server offers and sends) and the tracks it publishes and receives. It is
// owned by the Server's session manager from join until its teardown
// removes it.
//
// Goroutines: the reader (readLoop, then teardown) owns the WebSocket's
// read side and the session's end; the writer (wsClient.writeLoop) owns
// its write side; the negotiator (negotiateLoop) sends subscriber offers
// one at a time; one watcher per publication waits for its end. Pion's
// callbacks run on Pion's goroutines and only enqueue or call end.
//
// A session made by newSession alone (no participant) only removes itself
// from the manager on Close; the manager's tests use that.
type Session struct {
	id       string
	sessions *Sessions // the manager that holds it

	srv      *Server
	log      *slog.Logger
	identity string
	grants   auth.Grants
	room     *room
	opened   time.Time // WebSocket open: the start of the join time
	ws       *wsClient
	pub, sub *webrtc.PeerConnection
	pubICE   *signal.Trickle
	subICE   *signal.Trickle
	offers   *rate.Limiter // publisher offers
	inbound  *rate.Limiter // every client message: paces the reader

	renegotiate chan struct{} // cap 1: a subscriber offer is wanted
	answered    chan struct{} // cap 1: the outstanding offer was answered
	joinTimed   atomic.Bool   // the join time was recorded

	mu            sync.Mutex                   // guards the fields below
	ended         bool                         // no new subscriptions or watchers
	reason        string                       // why it ended
	subs          map[string]*sfu.Subscription // by publication id
	published     int                          // publications started
	candidates    map[uint64]struct{}          // distinct candidates received, both connections: see takeCandidates
	candidateSeed maphash.Seed                 // keys candidates; set once before the session is shared
	held          map[string][]webrtc.ICECandidateInit

	wg        sync.WaitGroup // writer, negotiator, watchers, notifications
	ending    chan struct{}  // closed by end
	endOnce   sync.Once
	closeOnce sync.Once     // bare sessions only
	done      chan struct{} // closed when the session has fully closed
}

func newSession(id string, m *Sessions) *Session {
	return &Session{id: id, sessions: m, done: make(chan struct{}), ending: make(chan struct{})}
}

// ID returns the session's id (the participant id).
func (s *Session) ID() string { return s.id }

// Identity is the participant's identity from its token.
func (s *Session) Identity() string { return s.identity }

// Done is closed once the session has fully closed.
func (s *Session) Done() <-chan struct{} { return s.done }

func (s *Session) participant() *signal.Participant {
	return &signal.Participant{ID: s.id, Identity: s.identity}
}

// notifyDraining tells the client the instance is draining, by when it
// must have left and, when its room moved to another instance, that
// instance's signaling URL. It does not wait for a slow client.
func (s *Session) notifyDraining(deadline time.Time, url string) {
	if s.ws == nil || !s.track() {
		return
	}
	go func() {
		defer s.wg.Done()
		s.send(&signal.Message{Type: signal.TypeDraining, Deadline: deadline.UTC().Truncate(time.Second), URL: url})
	}()
}

// isEnded reports whether end was called.
func (s *Session) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// track adds one goroutine to s.wg unless the session has ended; it
// reports whether it did. Adding after end would race teardown's Wait.
func (s *Session) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.wg.Add(1)
	return true
}

// Close ends the session for reason and waits until it has fully closed.
// It is idempotent; it must not be called from the session's own
// goroutines (they call end).
func (s *Session) Close(reason string) {
	if s.ws == nil {
		s.closeOnce.Do(func() {
			s.sessions.Remove(s.id)
			close(s.done)
		})
		return
	}
	s.end(reason)
	<-s.done
}

// end starts the end of the session without waiting: it records the
// reason (the first one wins) and tells the writer how to close the
// WebSocket. The reader then runs the teardown.
func (s *Session) end(reason string) {
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.ended, s.reason = true, reason
		s.mu.Unlock()
		close(s.ending)
		s.ws.stop(s.lastWords(reason))
	})
}

// lastWords maps a close reason to what the client is told: the
// protocol's leave reasons get a `leave` message; the close code says
// whether it was normal (1000), the server going away (1001) or a policy
// (1008).
func (s *Session) lastWords(reason string) lastWords {
	leave := func(code int) lastWords {
		b, _ := signal.Encode(&signal.Message{Type: signal.TypeLeave, Reason: reason})
		return lastWords{msg: b, code: code}
	}
	switch reason {
	case signal.ReasonServerShutdown:
		return leave(websocket.CloseGoingAway)
	case signal.ReasonTimeout:
		return leave(websocket.ClosePolicyViolation)
	case signal.ReasonSlowClient:
		return lastWords{code: websocket.ClosePolicyViolation, abort: true}
	case signal.ReasonICEFailed, signal.ReasonDuplicateIdentity:
		return leave(websocket.CloseNormalClosure)
	case reasonInternal:
		return leave(websocket.CloseInternalServerErr)
	}
	return lastWords{code: websocket.CloseNormalClosure}
}

// send enqueues m for the client. A client whose queue stays full is slow:
// its session ends. Nothing is dropped silently: a message that cannot be
// queued ends the connection, so the client knows to reconnect.
func (s *Session) send(m *signal.Message) {
	b, err := signal.Encode(m)
	if err != nil {
		s.log.Error("signal_encode_failed", "type", m.Type, "err", err)
		return
	}
	switch err := s.ws.send(b); {
	case errors.Is(err, errSlowClient):
		s.slowClient()
	case err != nil:
		s.log.Debug("signal_not_sent", "type", m.Type, "err", err)
	}
}

// slowClient ends the session of a client that does not take its
// messages: its queue stayed full, or a write to it timed out.
func (s *Session) slowClient() {
	if s.isEnded() {
		return
	}
	s.log.Info("slow_client", "queue", s.srv.cfg.SendQueue)
	s.srv.metrics.slow.Add(bg, 1)
	s.end(signal.ReasonSlowClient)
}

// sendError answers a refused request; the session continues.
func (s *Session) sendError(code, msg string) {
	s.srv.metrics.signalError(code)
	s.send(&signal.Message{Type: signal.TypeError, Code: code, Message: msg})
}

// recordJoin records the join time once, when media first flows.
func (s *Session) recordJoin(first string) {
	if s.joinTimed.CompareAndSwap(false, true) {
		s.srv.metrics.joinDuration(time.Since(s.opened), first)
	}
}
