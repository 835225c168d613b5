package edge

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"

	"github.com/media-service/media-service/edge/signal"
)

// maxResumeGrace bounds MEDIA_RESUME_GRACE: a session in its grace holds
// an admission, a room seat and two PeerConnections for a client that may
// never come back.
const maxResumeGrace = 5 * time.Minute

// reasonGraceExpired closes a session whose WebSocket was lost and that no
// resume reached within the grace period.
const reasonGraceExpired = "resume_grace_expired"

// handoverTimeout bounds how long an admitted resume waits for the
// session's reader to take its connection: the reader has only to notice
// the old connection closed, which the resume itself closes.
const handoverTimeout = 5 * time.Second

// Resume attempts against one session that passed the identity check:
// a burst of 5, then one per second. A client's backoff makes far fewer,
// and a credential has 130 random bits: the limit is against a stolen
// token hammering a session, not against guessing.
const (
	resumeAttemptBurst    = 5
	resumeAttemptInterval = time.Second
)

// resumeState is a session's resume credential and the state of its
// resumes and ICE restarts. The reader goroutine waits on handover while
// the session is detached; the HTTP handler of a resume sends on it.
type resumeState struct {
	grace    time.Duration
	attempts *rate.Limiter // resume attempts by the session's own identity
	restarts *rate.Limiter // ice_restart requests, paced as offers are

	handover   chan resumeTicket // unbuffered: an admitted resume's connection
	reattached chan struct{}     // cap 1: a resume attached; the negotiator re-sends its offer

	mu         sync.Mutex // guards the fields below
	credential string     // the one credential that resumes the session now
	resuming   bool       // a resume was admitted and has not attached yet
	detached   bool       // the WebSocket is lost; the reader waits for a resume
	restartSub bool       // the next subscriber offer restarts ICE
	iceFailed  map[string]*time.Timer
	resumedAt  time.Time // the last resume, until media is timed after it
}

// resumeTicket is an admitted resume: the new connection, the credential
// it was given, and when it arrived.
type resumeTicket struct {
	conn       *websocket.Conn
	credential string
	at         time.Time
}

func newResumeState(c sessionConfig) resumeState {
	return resumeState{
		grace:      c.ResumeGrace,
		attempts:   rate.NewLimiter(rate.Every(resumeAttemptInterval), resumeAttemptBurst),
		restarts:   rate.NewLimiter(rate.Every(c.OfferInterval), c.OfferBurst),
		handover:   make(chan resumeTicket),
		reattached: make(chan struct{}, 1),
		credential: newResumeCredential(),
		iceFailed:  make(map[string]*time.Timer),
	}
}

// newResumeCredential returns 26 base32 characters (130 random bits).
func newResumeCredential() string { return rand.Text() }

// currentCredential is the credential to hand the client now.
func (r *resumeState) currentCredential() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.credential
}

// isDetached reports whether the session waits for a resume.
func (r *resumeState) isDetached() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.detached
}

// stopTimers stops the waits for ICE restarts: the session ended.
func (r *resumeState) stopTimers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, t := range r.iceFailed {
		t.Stop()
		delete(r.iceFailed, k)
	}
}

// currentWS is the session's WebSocket, nil while it waits for a resume.
func (s *Session) currentWS() *wsClient {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	return s.ws
}

// resumeEpoch is the epoch of the session's WebSocket now: a message sent
// at an earlier epoch went to a connection since lost.
func (s *Session) resumeEpoch() uint64 {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	return s.wsEpoch
}

// newWS wraps conn as the session's WebSocket client.
func (s *Session) newWS(conn *websocket.Conn) *wsClient {
	var ws *wsClient
	ws = newWSClient(conn, s.deps.cfg.WS, func(err error) { s.writeFailed(ws, err) })
	return ws
}

// resumable reports whether a session whose reading of ws ended for
// reason waits for a resume: the connection was lost (reset, closed
// without a close frame, or silent), not ended on purpose.
func (s *Session) resumable(ws *wsClient, reason string) bool {
	return s.resume.grace > 0 && !ws.peerClosed && !s.isEnded() &&
		(reason == reasonClientClosed || reason == signal.ReasonTimeout)
}

// awaitResume runs on the reader after ws was lost: it detaches ws and
// waits for an admitted resume, the end of the session, or the grace
// period. It reports whether a new connection is attached, and otherwise
// the reason to end with.
func (s *Session) awaitResume(ws *wsClient, reason string) (string, bool) {
	if !s.resumable(ws, reason) {
		return reason, false
	}
	s.detach(ws)
	s.log.Info("session_detached", "reason", reason, "grace", s.resume.grace.String())
	t := time.NewTimer(s.resume.grace)
	defer t.Stop()
	select {
	case tk := <-s.resume.handover:
		return reason, s.attach(tk)
	case <-t.C:
		s.log.Info("resume_grace_expired")
		return reasonGraceExpired, false
	case <-s.ending:
		return reason, false
	}
}

// detach ends ws and leaves the session without a WebSocket: messages for
// the client are then dropped, to be re-synced by the resume.
func (s *Session) detach(ws *wsClient) {
	ws.stop(lastWords{abort: true})
	<-ws.done
	s.wsMu.Lock()
	s.ws = nil
	s.wsMu.Unlock()
	s.resume.mu.Lock()
	s.resume.detached = true
	s.resume.mu.Unlock()
}

// attach makes tk's connection the session's WebSocket. Its first message
// is `resumed` with the room's state at that instant, queued inside the
// room's lock as `joined` is, so every later participant change reaches
// the client after it. The negotiator then re-sends an unanswered offer.
func (s *Session) attach(tk resumeTicket) bool {
	if !s.track() {
		tk.conn.Close()
		return false
	}
	ws := s.newWS(tk.conn)
	s.room.snapshot(s, func(others []*Session) {
		m := s.joinedMessage(others)
		m.Type, m.Resume = signal.TypeResumed, tk.credential
		b, err := signal.Encode(m)
		if err == nil {
			ws.queue <- b // the queue is new and empty
		}
		s.wsMu.Lock()
		s.ws = ws
		s.wsEpoch++
		s.wsMu.Unlock()
	})
	go func() { defer s.wg.Done(); ws.writeLoop() }()
	s.resume.mu.Lock()
	s.resume.resuming, s.resume.detached, s.resume.resumedAt = false, false, tk.at
	s.resume.mu.Unlock()
	select {
	case s.resume.reattached <- struct{}{}:
	default:
	}
	s.deps.metrics.resumed(resumeOK)
	s.log.Info("session_resumed")
	s.timeMediaAfterResume()
	return true
}

// timeMediaAfterResume records, once both connections are up after a
// resume, how long media took to come back.
func (s *Session) timeMediaAfterResume() {
	if s.pub.ConnectionState() != webrtc.PeerConnectionStateConnected && len(s.pub.GetReceivers()) > 0 {
		return
	}
	if s.sub.PeerConnection().ConnectionState() != webrtc.PeerConnectionStateConnected {
		return
	}
	s.resume.mu.Lock()
	at := s.resume.resumedAt
	s.resume.resumedAt = time.Time{}
	s.resume.mu.Unlock()
	if !at.IsZero() {
		s.deps.metrics.resumeMedia.Record(bg, time.Since(at).Seconds())
	}
}

// iceLost starts the wait for an ICE restart of target's failed
// connection: the client restarts ICE when its network comes back, and
// the session ends only if the connection is not up again within the
// grace period.
func (s *Session) iceLost(target string) {
	if s.resume.grace == 0 {
		s.log.Info("peer_connection_lost", "target", target, "state", "failed")
		s.end(signal.ReasonICEFailed)
		return
	}
	s.resume.mu.Lock()
	defer s.resume.mu.Unlock()
	if _, waiting := s.resume.iceFailed[target]; waiting {
		return
	}
	s.log.Info("peer_connection_failed", "target", target)
	s.resume.iceFailed[target] = time.AfterFunc(s.resume.grace, func() {
		s.log.Info("peer_connection_lost", "target", target, "state", "failed")
		s.end(signal.ReasonICEFailed)
	})
}

// iceRecovered stops the wait of iceLost: target's connection is up.
func (s *Session) iceRecovered(target string) {
	s.resume.mu.Lock()
	if t, ok := s.resume.iceFailed[target]; ok {
		t.Stop()
		delete(s.resume.iceFailed, target)
		s.log.Info("peer_connection_recovered", "target", target)
	}
	s.resume.mu.Unlock()
	s.timeMediaAfterResume()
}
