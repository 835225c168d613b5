package edge

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/connlimit"
)

// Join results: the values of media_joins_total's result attribute.
const (
	joinOK           = "ok"
	joinUnauthorized = "unauthorized"
	joinForbidden    = "forbidden"
	joinRoomFull     = "room_full"
	joinRoomsFull    = "rooms_full"
	joinFull         = "full"
	joinDraining     = "draining"
	joinAddrLimit    = "address_limit"
	joinUpgradeFail  = "upgrade_failed"
	joinInternal     = "internal"
)

// newUpgrader returns the WebSocket upgrader of /v1/rtc. Any origin may
// connect: the access token in the URL is the credential, and a page on
// another origin cannot obtain one without the application's backend, so
// there is no ambient authority (cookie) for a cross-site page to abuse.
func newUpgrader() websocket.Upgrader {
	return websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
		CheckOrigin:      func(*http.Request) bool { return true },
		Error:            upgradeError,
	}
}

// upgradeError answers a request the upgrader refuses (not a WebSocket
// handshake) with the same JSON body as every other refusal.
func upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Sec-Websocket-Version", "13")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiError{Code: "bad_request", Message: reason.Error()})
}

// handleRTC admits a participant: token, room and instance limits are
// checked before the upgrade, so a refusal is a plain HTTP answer with a
// JSON body. See PROTOCOL.md, "Connecting".
func (srv *Server) handleRTC(c echo.Context) error {
	opened := time.Now()
	claims, err := srv.keys.Verify(c.QueryParam("access_token"), opened)
	if err != nil {
		return srv.refuseToken(c, err)
	}
	if srv.revokedAnywhere(c.Request().Context(), tokenKey(c.QueryParam("access_token")), opened) {
		return srv.refuse(c, http.StatusForbidden, joinForbidden, signal.ReasonRemoved, "the participant was removed from the room; this token cannot join again")
	}
	if room := c.QueryParam("room"); room != "" && room != claims.Room {
		return srv.refuse(c, http.StatusForbidden, joinForbidden, "forbidden", "the token is for another room")
	}
	if c.QueryParam("resume") != "" {
		return srv.handleResume(c, claims)
	}
	if srv.Draining() {
		return srv.refuse(c, http.StatusServiceUnavailable, joinDraining, "draining", "the instance is draining; reconnect")
	}
	if done, err := srv.route(c, claims.Room); done { // the room lives elsewhere, or cannot be placed
		return err
	}
	addr := connlimit.RequestBucket(c.Request(), srv.cfg.ClientIPHeader)
	if !srv.perAddr.Acquire(addr) {
		return srv.refuse(c, http.StatusTooManyRequests, joinAddrLimit, "too_many_sessions", "this address holds as many sessions as one address may")
	}
	if srv.admitted.Add(1) > int64(srv.cfg.MaxSessions) {
		srv.admitted.Add(-1)
		srv.perAddr.Release(addr)
		return srv.refuse(c, http.StatusServiceUnavailable, joinFull, "full", "the instance is at its session limit")
	}
	r, err := srv.rooms.reserve(claims.Room, claims.Identity())
	if err != nil {
		srv.admitted.Add(-1)
		srv.perAddr.Release(addr)
		if errors.Is(err, errRoomFull) {
			return srv.refuse(c, http.StatusForbidden, joinRoomFull, "room_full", "the room is full")
		}
		return srv.refuse(c, http.StatusServiceUnavailable, joinRoomsFull, "full", "the instance is at its room limit")
	}
	if old := r.byIdentity(claims.Identity()); old != nil {
		old.Close(signal.ReasonDuplicateIdentity)
	}
	return srv.upgrade(c, claims, r, opened, addr)
}

// upgrade switches to the WebSocket and starts the session; the
// reservations are given back if that fails, and the address's slot when
// the session has closed.
func (srv *Server) upgrade(c echo.Context, claims *auth.Claims, r *room, opened time.Time, addr netip.Prefix) error {
	conn, err := srv.upgrader.Upgrade(c.Response(), c.Request(), nil)
	if err != nil { // the upgrader has answered the client
		srv.rooms.release(r)
		srv.admitted.Add(-1)
		srv.perAddr.Release(addr)
		srv.metrics.join(joinUpgradeFail)
		return nil
	}
	s, err := newSession(conn, claims, r, opened, srv.sessionDeps())
	if err != nil {
		srv.log.Error("session_setup_failed", "err", err)
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseInternalServerErr, ""), time.Now().Add(closeGrace))
		conn.Close()
		srv.rooms.release(r)
		srv.admitted.Add(-1)
		srv.perAddr.Release(addr)
		srv.metrics.join(joinInternal)
		return nil
	}
	s.jti, s.tokenExp = tokenKey(c.QueryParam("access_token")), claims.ExpiresAt.Add(auth.Leeway)
	srv.sessions.Add(s)
	srv.perAddr.ReleaseWhenDone(addr, s.Done())
	srv.metrics.join(joinOK)
	s.log.Info("session_joined")
	s.start()
	// A drain that began closing sessions before Add missed this one.
	if srv.closingAll.Load() {
		s.end(signal.ReasonServerShutdown)
	} else if srv.Draining() {
		s.notifyDraining(srv.drainDeadline(), srv.movedTo(s))
	}
	return nil
}

// refuseToken answers a refused token: 403 when it is authentic but does
// not permit the join, 401 otherwise.
func (srv *Server) refuseToken(c echo.Context, err error) error {
	var ae *auth.Error
	if errors.As(err, &ae) && ae.Forbidden {
		return srv.refuse(c, http.StatusForbidden, joinForbidden, "forbidden", err.Error())
	}
	return srv.refuse(c, http.StatusUnauthorized, joinUnauthorized, "unauthorized", err.Error())
}

// refuse answers a join with status and a JSON body, counted by result.
// 503s and 429s carry Retry-After.
func (srv *Server) refuse(c echo.Context, status int, result, code, msg string) error {
	srv.metrics.join(result)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(srv.cfg.RetryAfter.Seconds())))
	}
	return c.JSON(status, apiError{Code: code, Message: msg})
}

// sessionDeps is what the instance lends each session it admits.
func (srv *Server) sessionDeps() sessionDeps {
	d := sessionDeps{
		cfg: newSessionConfig(srv.cfg), log: srv.log, metrics: srv.metrics, media: srv.media,
		rooms: srv.rooms, sessions: srv.sessions,
		closed: func() { srv.admitted.Add(-1) },
	}
	if srv.relay != nil {
		d.iceServers = srv.relay.ICEServers
	}
	return d
}
