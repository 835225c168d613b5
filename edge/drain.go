package edge

import (
	"context"
	"time"
)

// ShutdownCause is the cause cmd/media-service cancels Run's context with,
// so the drain logs say why it began.
type ShutdownCause struct {
	Reason string // "signal", ...
	Signal string // "SIGTERM", "SIGINT" or empty
}

func (c *ShutdownCause) Error() string { return "shutdown: " + c.Reason + " " + c.Signal }

// httpShutdownGrace bounds how long in-flight plain HTTP requests get once
// the listener is closed. WebSockets are hijacked and not waited for here:
// the session manager tracks them.
const httpShutdownGrace = 2 * time.Second

// drain is the drain sequence of DESIGN.md. Draining is a state: readiness
// flips and joins are refused at once, clients are told the deadline, then
// it waits for the session count to reach zero, for the deadline, or for
// Close, whichever comes first, and closes whatever is left.
//
// One deliberate difference from the order in DESIGN.md: the HTTP listener
// keeps answering during the wait and is shut down when the wait ends. A
// platform's readiness check must read /ready 503 (a refused connection
// reads as a crashed instance, not a draining one), and a client that tries
// to join must get 503 with Retry-After rather than a reset. Joins are
// refused from the first moment, so keeping the listener adds no sessions.
func (s *Server) drain(cause error) {
	reason, sig := "shutdown", ""
	if c, ok := cause.(*ShutdownCause); ok {
		reason, sig = c.Reason, c.Signal
	}
	s.log.Info("shutting_down_server", "reason", reason, "signal", sig, "sessions", s.sessions.Len())
	endedBefore := s.sessions.ended.Load()
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	s.deadline.Store(deadline.UnixNano())
	s.draining.Store(true)
	if s.relay != nil {
		s.relay.Drain()
	}
	s.moveRooms(deadline) // in a fleet: each room to a sibling (fleetdrain.go)
	for _, sess := range s.sessions.All() {
		sess.notifyDraining(deadline, s.movedTo(sess))
	}

	waitCtx, cancel := context.WithDeadline(context.Background(), deadline)
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-waitCtx.Done():
		}
	}()
	_ = s.sessions.WaitEmpty(waitCtx)
	cancel()
	s.shutdownHTTP()

	s.log.Info("closing_all_sessions", "remaining", s.sessions.Len())
	s.closingAll.Store(true)
	atDeadline := s.sessions.Close("server_shutdown")
	if s.relay != nil {
		if err := s.relay.Close(); err != nil {
			s.log.Warn("relay_close_failed", "err", err)
		}
	}
	if err := s.media.Close(); err != nil {
		s.log.Warn("media_close_failed", "err", err)
	}
	s.log.Info("server_stopped", "closed_sessions", s.sessions.ended.Load()-endedBefore, "closed_at_deadline", atDeadline)
}

// shutdownHTTP closes the HTTP listener and gives in-flight plain requests
// a short grace. Hijacked WebSockets are not waited for: the session
// manager tracks and closes them.
func (s *Server) shutdownHTTP() {
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdownGrace)
	defer cancel()
	if err := s.httpSrv.Shutdown(ctx); err != nil {
		s.log.Warn("http_shutdown_incomplete", "err", err)
	}
}

// drainDeadline is when the drain closes what is left; zero before the
// drain began.
func (s *Server) drainDeadline() time.Time {
	if ns := s.deadline.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}
