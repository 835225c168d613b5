package edge

import (
	"errors"
	"time"

	"github.com/gorilla/websocket"

	"github.com/media-service/media-service/edge/signal"
)

// run is the reader goroutine: it handles the client's messages in order
// until the WebSocket ends, then tears the session down.
// A lost connection (closed or silent) does not end a session that may be
// resumed: the reader waits for the resume (awaitResume) and reads the new
// connection.
func (s *Session) run() {
	for {
		ws := s.currentWS()
		reason := s.readLoop(ws)
		close(ws.readDone) // first: the writer's lingering close reads next
		reason, resumed := s.awaitResume(ws, reason)
		if !resumed {
			s.end(reason)
			break
		}
	}
	s.teardown()
}

// readLoop reads ws until the connection ends and returns the close
// reason (end keeps the first reason, so a leave before the close wins).
func (s *Session) readLoop(ws *wsClient) string {
	conn := ws.conn
	idle := s.deps.cfg.IdleTimeout
	_ = conn.SetReadDeadline(time.Now().Add(idle))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(idle)) })
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			// gorilla reports a connection that ended without a close
			// frame as 1006: that one was lost, not closed.
			ws.peerClosed = errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure
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
		s.noteSources(m.Sources)
		s.handleOffer(m.SDP, m.OfferID)
	case signal.TypeMute:
		s.handleMute(m.TrackID, *m.Muted)
	case signal.TypeAnswer:
		s.handleAnswer(m.SDP, m.OfferID)
	case signal.TypeCandidate:
		s.handleCandidate(m.Target, *m.Candidate)
	case signal.TypeTrackSettings:
		s.handleTrackSettings(m)
	case signal.TypeICERestart:
		s.handleICERestart()
	case signal.TypeLeave:
		return true
	}
	return false
}
