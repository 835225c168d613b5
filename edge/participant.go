package edge

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

// newParticipantID returns "PA_" and 12 random characters: ids a client
// sees must not be guessable.
func newParticipantID() string { return "PA_" + rand.Text()[:12] }

// newParticipant builds the session of an admitted, upgraded client: its
// WebSocket client and both PeerConnections. It starts nothing.
func (srv *Server) newParticipant(conn *websocket.Conn, c *auth.Claims, r *room, opened time.Time) (*Session, error) {
	s := newSession(newParticipantID(), srv.sessions)
	s.srv, s.identity, s.grants, s.room, s.opened = srv, c.Identity(), c.Grants, r, opened
	s.log = srv.log.With("session", s.id, "room", r.name, "identity", s.identity)
	s.offers = rate.NewLimiter(rate.Every(srv.cfg.OfferInterval), srv.cfg.OfferBurst)
	s.inbound = rate.NewLimiter(rate.Limit(srv.cfg.MessageRate), srv.cfg.MessageBurst)
	s.renegotiate, s.answered = make(chan struct{}, 1), make(chan struct{}, 1)
	s.subs, s.held = make(map[string]*sfu.Subscription), make(map[string][]webrtc.ICECandidateInit)
	s.candidates, s.candidateSeed = make(map[uint64]struct{}), maphash.MakeSeed()
	s.ws = newWSClient(conn, srv.cfg, s.writeFailed)
	var err error
	if s.pub, err = srv.media.NewPublisherPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, err
	}
	if s.sub, err = srv.media.NewSubscriberConn(webrtc.Configuration{}); err != nil {
		_ = s.pub.Close()
		return nil, err
	}
	s.pubICE = signal.NewTrickle(s.candidateSender(signal.TargetPublisher))
	s.subICE = signal.NewTrickle(s.candidateSender(signal.TargetSubscriber))
	s.pub.OnICECandidate(s.pubICE.Candidate)
	s.sub.PeerConnection().OnICECandidate(s.subICE.Candidate)
	s.pub.OnTrack(s.onTrack)
	s.pub.OnConnectionStateChange(s.connectionState(signal.TargetPublisher))
	s.sub.PeerConnection().OnConnectionStateChange(s.connectionState(signal.TargetSubscriber))
	return s, nil
}

// start joins the room, greets the client and the room, and starts the
// session's goroutines. The reader runs teardown when it ends.
func (s *Session) start() {
	s.srv.metrics.sessions.Add(bg, 1)
	// joined is queued inside the room's lock: once s is a member, a
	// concurrent joiner may queue participant_joined to it, and that must
	// come after joined.
	others, pubs := s.room.join(s, func(others []*Session) { s.send(s.joinedMessage(others)) })
	s.srv.metrics.participants.Add(bg, 1)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.ws.writeLoop() }()
	// The negotiator starts after joined is queued: a publication elsewhere
	// may already have asked for a subscriber offer.
	go func() { defer s.wg.Done(); s.negotiateLoop() }()
	for _, o := range others {
		o.send(&signal.Message{Type: signal.TypeParticipantJoined, Participant: s.participant()})
	}
	for _, p := range pubs {
		s.subscribe(p)
	}
	go s.run()
}

func (s *Session) joinedMessage(others []*Session) *signal.Message {
	m := &signal.Message{Type: signal.TypeJoined, Protocol: signal.Version, Room: s.room.name,
		Participant: s.participant(), Participants: make([]signal.Participant, 0, len(others)),
		ICEServers: []signal.ICEServer{}}
	for _, o := range others {
		m.Participants = append(m.Participants, *o.participant())
	}
	if s.srv.relay != nil {
		m.ICEServers = append(m.ICEServers, s.srv.relay.ICEServers(s.identity)...)
	}
	return m
}

// run is the reader goroutine: it handles the client's messages in order
// until the WebSocket ends, then tears the session down.
func (s *Session) run() {
	reason := s.readLoop()
	close(s.ws.readDone) // first: the writer's lingering close reads next
	s.end(reason)
	s.teardown()
}

// readLoop reads until the connection ends and returns the close reason
// (end keeps the first reason, so a leave before the close wins).
func (s *Session) readLoop() string {
	conn := s.ws.conn
	idle := s.srv.cfg.IdleTimeout
	_ = conn.SetReadDeadline(time.Now().Add(idle))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(idle)) })
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return s.readEndReason(err)
		}
		s.pace()
		_ = conn.SetReadDeadline(time.Now().Add(idle))
		select {
		case <-s.ending: // only the client's close frame matters now
			continue
		default:
		}
		if s.handle(data) {
			// Keep reading, discarding, until the client's close frame:
			// closing with its input unread would reset the connection.
			s.end(reasonClientLeave)
		}
	}
}

// pace waits, before a message is handled, until the client's message
// rate allows it (or the session ends). While the reader waits, the
// client's further messages stay in the socket and TCP slows the client
// down: a flood is slowed, not dropped.
func (s *Session) pace() {
	d := s.inbound.Reserve().Delay()
	if d == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ending:
	}
}

// readEndReason names why reading ended.
func (s *Session) readEndReason(err error) string {
	var ne interface{ Timeout() bool }
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return reasonMessageTooBig
	case errors.As(err, &ne) && ne.Timeout():
		return signal.ReasonTimeout
	}
	return reasonClientClosed
}

// handle dispatches one client message; it reports whether the client
// left.
func (s *Session) handle(data []byte) (left bool) {
	m, err := signal.Decode(data)
	if err != nil {
		var se *signal.Error
		if errors.As(err, &se) {
			s.sendError(se.Code, se.Message)
		}
		return false
	}
	switch m.Type {
	case signal.TypeOffer:
		s.handleOffer(m.SDP)
	case signal.TypeAnswer:
		s.handleAnswer(m.SDP)
	case signal.TypeCandidate:
		s.handleCandidate(m.Target, *m.Candidate)
	case signal.TypeLeave:
		return true
	}
	return false
}

// writeFailed is the writer's report of a failed write or ping. A write
// that timed out means the client stopped reading: a slow client. Any
// other failure means the connection is gone.
func (s *Session) writeFailed(err error) {
	s.log.Debug("signal_write_failed", "err", err)
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		s.slowClient()
		return
	}
	s.end(reasonClientClosed)
}

// connectionState ends the session when either connection fails (ICE
// gave up after the engine's timeouts) or is closed by the client (Pion
// closes the connection when the peer's DTLS says close_notify): either
// way the participant's media is gone while its WebSocket may live on.
func (s *Session) connectionState(target string) func(webrtc.PeerConnectionState) {
	return func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			if s.isEnded() { // our own teardown closes them too
				return
			}
			s.log.Info("peer_connection_lost", "target", target, "state", st.String())
			s.end(signal.ReasonICEFailed)
		}
	}
}

// teardown runs once on the reader goroutine after the session ended:
// nothing the session owned outlives it.
func (s *Session) teardown() {
	s.wg.Wait() // writer (connection closed), negotiator, watchers
	others, owned := s.srv.rooms.leave(s.room, s)
	s.srv.metrics.participants.Add(bg, -1)
	for _, p := range owned {
		p.Close()
	}
	for _, o := range others {
		o.unsubscribe(owned...)
		o.send(&signal.Message{Type: signal.TypeParticipantLeft, Participant: s.participant()})
	}
	s.closeMedia()
	s.sessions.Remove(s.id)
	s.srv.admitted.Add(-1)
	s.srv.metrics.sessions.Add(bg, -1)
	s.srv.metrics.sessionClosed(s.reason)
	s.log.Info("session_closed", "reason", s.reason, "duration", time.Since(s.opened).Round(time.Millisecond).String())
	close(s.done)
}

// closeMedia ends the session's subscriptions and both PeerConnections.
func (s *Session) closeMedia() {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		if err := sub.Close(); err != nil {
			s.log.Debug("subscription_close_failed", "err", err)
		}
	}
	if err := errors.Join(closePeer(s.pub), closePeer(s.sub)); err != nil {
		s.log.Debug("peer_close_failed", "err", err)
	}
}

// String names the session in logs and errors.
func (s *Session) String() string { return fmt.Sprintf("session %s (%s)", s.id, s.identity) }
