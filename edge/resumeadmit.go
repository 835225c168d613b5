package edge

import (
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/media-service/media-service/edge/auth"
)

// Resume results: the values of media_resumes_total's result attribute.
const (
	resumeOK         = "ok"
	resumeUnknown    = "unknown_session"
	resumeForbidden  = "forbidden"
	resumeInProgress = "in_progress"
	resumeRateLimit  = "rate_limited"
	resumeDraining   = "draining"
	resumeUpgrade    = "upgrade_failed"
	resumeLost       = "lost" // the session ended while the resume was handed over
)

// resumeResults are all of them, each counted from 0 at start so that the
// alert on the refused share has its series before the first resume.
var resumeResults = []string{resumeOK, resumeUnknown, resumeForbidden, resumeInProgress,
	resumeRateLimit, resumeDraining, resumeUpgrade, resumeLost}

// resumeRefusal is a resume refused before the upgrade.
type resumeRefusal struct {
	status       int
	result, code string
	message, url string
}

// handleResume admits the reconnect of a session that lost its WebSocket:
// GET /v1/rtc?access_token=JWT&participant=ID&resume=CREDENTIAL. The
// access token must be valid and for the session's identity and room; the
// credential is the session's current one, and it is spent by this
// attempt: the new connection's `resumed` carries the next. See
// PROTOCOL.md, "Resuming".
func (srv *Server) handleResume(c echo.Context, claims *auth.Claims) error {
	s, ok := srv.sessions.Get(c.QueryParam("participant"))
	if !ok || s.isEnded() {
		return srv.refuseResume(c, &resumeRefusal{status: http.StatusNotFound, result: resumeUnknown, code: "resume_unknown",
			message: "no session to resume here: it ended (its grace period passed) or lives on another instance; join again"})
	}
	if srv.Draining() {
		return srv.refuseResume(c, &resumeRefusal{status: http.StatusServiceUnavailable, result: resumeDraining, code: "draining",
			message: "the instance is draining; join again where the room went", url: srv.movedTo(s)})
	}
	credential, refusal := s.admitResume(claims, c.QueryParam("resume"))
	if refusal != nil {
		return srv.refuseResume(c, refusal)
	}
	conn, err := srv.upgrader.Upgrade(c.Response(), c.Request(), nil)
	if err != nil { // the upgrader has answered; the spent credential stays spent
		s.resume.abandon()
		srv.metrics.resumed(resumeUpgrade)
		return nil
	}
	if !s.handOver(resumeTicket{conn: conn, credential: credential, at: time.Now()}) {
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "session ended"), time.Now().Add(closeGrace))
		conn.Close()
		srv.metrics.resumed(resumeLost)
	}
	return nil
}

// refuseResume answers a refused resume with its status and a JSON body
// (with the room's new URL when a drain moved it), counted by result.
func (srv *Server) refuseResume(c echo.Context, r *resumeRefusal) error {
	srv.metrics.resumed(r.result)
	if r.status == http.StatusServiceUnavailable || r.status == http.StatusTooManyRequests {
		c.Response().Header().Set("Retry-After", "1")
	}
	return c.JSON(r.status, apiError{Code: r.code, Message: r.message, URL: r.url})
}

// admitResume checks a resume of s by the holder of claims with
// credential, and spends the credential: it returns the next one. The
// identity is checked first, so only the participant's own token counts
// against its attempts: another member of the room cannot exhaust them.
func (s *Session) admitResume(claims *auth.Claims, credential string) (string, *resumeRefusal) {
	if s.resume.grace == 0 {
		return "", &resumeRefusal{status: http.StatusNotFound, result: resumeUnknown, code: "resume_unknown",
			message: "resume is off on this instance (MEDIA_RESUME_GRACE=0); join again"}
	}
	if claims.Identity() != s.identity || claims.Room != s.room.name {
		return "", &resumeRefusal{status: http.StatusForbidden, result: resumeForbidden, code: "resume_forbidden",
			message: "the access token is for another participant: a resume credential is bound to its session's identity"}
	}
	if !s.resume.attempts.Allow() {
		return "", &resumeRefusal{status: http.StatusTooManyRequests, result: resumeRateLimit, code: "rate_limited",
			message: "too many resume attempts for this session; wait"}
	}
	r := &s.resume
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resuming {
		return "", &resumeRefusal{status: http.StatusConflict, result: resumeInProgress, code: "resume_in_progress",
			message: "another connection is resuming this session"}
	}
	if subtle.ConstantTimeCompare([]byte(credential), []byte(r.credential)) != 1 {
		return "", &resumeRefusal{status: http.StatusForbidden, result: resumeForbidden, code: "resume_forbidden",
			message: "the resume credential is not this session's current one (each is valid for one resume)"}
	}
	r.credential, r.resuming = newResumeCredential(), true
	return r.credential, nil
}

// abandon ends an admitted resume that will not attach, so that another
// may be tried (with the credential it issued, which nobody received:
// the client must join again).
func (r *resumeState) abandon() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resuming = false
}

// handOver closes the session's current WebSocket, if the session had not
// noticed it was lost yet, and hands tk to the reader. It reports false
// when the session ended first.
func (s *Session) handOver(tk resumeTicket) bool {
	if ws := s.currentWS(); ws != nil {
		ws.stop(lastWords{abort: true})
	}
	t := time.NewTimer(handoverTimeout)
	defer t.Stop()
	select {
	case s.resume.handover <- tk:
		return true
	case <-s.ending:
	case <-t.C:
	}
	s.resume.abandon()
	return false
}
