package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

// The server API (docs/API.md): JSON over HTTP on the signaling
// listener, under /api/v1, for the application's backend. Every request
// carries an admin token (auth.AdminClaims) as "Authorization: Bearer".
// In a fleet, a request about a room that lives on another instance is
// proxied there (see proxyToOwner); listing rooms gathers every owner's
// rooms (apirooms.go).

// API bounds.
const (
	// MaxMetadataLen bounds a participant's metadata, in bytes: it is
	// sent to every member of the room with each update and in every
	// later joined.
	MaxMetadataLen = 4096
	// apiProxyTimeout bounds a request proxied to a room's owner.
	apiProxyTimeout = 10 * time.Second
	// forwardedHeader marks a request proxied from a sibling instance: it
	// is answered where it arrives, never proxied again, so two instances
	// that disagree about a room cannot bounce it between them.
	forwardedHeader = "X-Media-Forwarded"
)

func (srv *Server) routeAPI(e *echo.Echo) {
	g := e.Group("/api/v1", srv.metrics.api.measure, middleware.BodyLimit("16K")) // the largest body is a metadata update
	list := func(g auth.AdminGrants) bool { return g.RoomList || g.RoomAdmin }
	admin := func(g auth.AdminGrants) bool { return g.RoomAdmin }
	g.GET("/rooms", srv.handleListRooms, srv.requireAdmin(list))
	room := g.Group("/rooms/:room", srv.requireAdmin(admin), srv.routeRoom)
	room.DELETE("", srv.handleCloseRoom)
	room.GET("/participants", srv.handleListParticipants)
	room.GET("/participants/:identity", srv.handleGetParticipant)
	room.DELETE("/participants/:identity", srv.handleRemoveParticipant)
	room.PATCH("/participants/:identity", srv.handleUpdateParticipant)
	room.POST("/participants/:identity/tracks/:track/mute", srv.handleMuteTrack)
}

// requireAdmin checks the request's admin token: 401 when it is missing
// or does not prove who sent it, 403 when it is authentic but does not
// grant what allowed asks (a participant token grants nothing here).
func (srv *Server) requireAdmin(allowed func(auth.AdminGrants) bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, _ := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
			claims, err := srv.keys.VerifyAdmin(strings.TrimSpace(tok), time.Now())
			var ae *auth.Error
			switch {
			case errors.As(err, &ae) && ae.Forbidden:
				return c.JSON(http.StatusForbidden, apiError{Code: "forbidden", Message: err.Error()})
			case err != nil:
				return c.JSON(http.StatusUnauthorized, apiError{Code: "unauthorized", Message: err.Error()})
			case !allowed(claims.Admin):
				return c.JSON(http.StatusForbidden, apiError{Code: "forbidden", Message: "the token does not grant this"})
			}
			return next(c)
		}
	}
}

// apiRoom is a room in the API's answers. In a fleet it names the
// instance that holds it, and Error says why an owner's room has no
// counts (its owner is gone or did not answer).
type apiRoom struct {
	Name         string `json:"name"`
	Participants int    `json:"participants"`
	Tracks       int    `json:"tracks"`
	Instance     string `json:"instance,omitempty"`
	Error        string `json:"error,omitempty"`
}

// apiParticipant is a participant in the API's answers.
type apiParticipant struct {
	ID       string     `json:"id"`
	Identity string     `json:"identity"`
	Metadata string     `json:"metadata"`
	Tracks   []apiTrack `json:"tracks"`
}

// apiTrack is a published track in the API's answers: the protocol's
// description and how many simulcast layers arrive (1 for a plain track).
type apiTrack struct {
	signal.Track
	Layers int `json:"layers"`
}

func (srv *Server) handleListParticipants(c echo.Context) error {
	r := c.Get("room").(*room)
	return c.JSON(http.StatusOK, map[string][]apiParticipant{"participants": r.describeAll()})
}

func (srv *Server) handleGetParticipant(c echo.Context) error {
	r := c.Get("room").(*room)
	for _, p := range r.describeAll() {
		if p.Identity == c.Param("identity") {
			return c.JSON(http.StatusOK, p)
		}
	}
	return notFound(c, "participant_not_found", "no participant with that identity in the room")
}

// handleRemoveParticipant ends the participant's session with leave
// reason removed, and revokes the token it joined with. In a fleet the
// revocation is written to the directory first: if it cannot be, the
// participant stays and the answer is 503, so a 204 always means that
// no instance will take the token again.
func (srv *Server) handleRemoveParticipant(c echo.Context) error {
	s := c.Get("room").(*room).byIdentity(c.Param("identity"))
	if s == nil {
		return notFound(c, "participant_not_found", "no participant with that identity in the room")
	}
	if err := srv.revokeInFleet(c.Request().Context(), s.jti, s.tokenExp); err != nil {
		srv.log.Warn("revoke_failed", "err", err)
		return c.JSON(http.StatusServiceUnavailable, apiError{Code: "directory_unavailable",
			Message: "the removal cannot be recorded in the room directory now; the participant stays; try again"})
	}
	srv.revoked.revoke(s.jti, s.tokenExp, time.Now())
	s.Close(signal.ReasonRemoved)
	return c.NoContent(http.StatusNoContent)
}

// handleMuteTrack mutes or unmutes one of a participant's tracks; the
// room, the participant included, is told with track_muted.
func (srv *Server) handleMuteTrack(c echo.Context) error {
	var body struct {
		Muted *bool `json:"muted"`
	}
	if err := c.Bind(&body); err != nil || body.Muted == nil {
		return c.JSON(http.StatusBadRequest, apiError{Code: "bad_request", Message: `the body must be {"muted": true|false}`})
	}
	r := c.Get("room").(*room)
	s := r.byIdentity(c.Param("identity"))
	if s == nil {
		return notFound(c, "participant_not_found", "no participant with that identity in the room")
	}
	p := r.publicationOf(s, c.Param("track"))
	if p == nil {
		return notFound(c, "track_not_found", "the participant publishes no track with that id")
	}
	r.setMuted(s, p, *body.Muted, signal.ReasonAPI)
	return c.JSON(http.StatusOK, describeAPITrack(p))
}

// handleUpdateParticipant sets a participant's metadata and tells the
// room, the participant included, with participant_updated.
func (srv *Server) handleUpdateParticipant(c echo.Context) error {
	var body struct {
		Metadata *string `json:"metadata"`
	}
	if err := c.Bind(&body); err != nil || body.Metadata == nil {
		return c.JSON(http.StatusBadRequest, apiError{Code: "bad_request", Message: `the body must be {"metadata": "..."}`})
	}
	if len(*body.Metadata) > MaxMetadataLen {
		return c.JSON(http.StatusBadRequest, apiError{Code: "metadata_too_long",
			Message: "metadata is at most 4096 bytes"})
	}
	r := c.Get("room").(*room)
	s := r.byIdentity(c.Param("identity"))
	if s == nil {
		return notFound(c, "participant_not_found", "no participant with that identity in the room")
	}
	s.mu.Lock()
	s.metadata = *body.Metadata
	s.mu.Unlock()
	r.broadcast(&signal.Message{Type: signal.TypeParticipantUpdated, Participant: s.participant()})
	return c.JSON(http.StatusOK, r.describe(s))
}

// handleCloseRoom ends every session of the room with leave reason
// room_closed, and answers once they have all closed.
func (srv *Server) handleCloseRoom(c echo.Context) error {
	var wg sync.WaitGroup
	for _, s := range c.Get("room").(*room).everyone() {
		wg.Go(func() { s.Close(signal.ReasonRoomClosed) })
	}
	wg.Wait()
	return c.NoContent(http.StatusNoContent)
}

func notFound(c echo.Context, code, msg string) error {
	return c.JSON(http.StatusNotFound, apiError{Code: code, Message: msg})
}

// routeRoom finds the request's room: here, it is handed to the handler
// as "room"; on another instance of the fleet, the request is proxied to
// it; nowhere, 404. A room name no token could carry is 400.
func (srv *Server) routeRoom(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("room")
		if !auth.ValidRoom(name) {
			return c.JSON(http.StatusBadRequest, apiError{Code: "bad_room", Message: "not a room name"})
		}
		if r := srv.rooms.get(name); r != nil {
			c.Set("room", r)
			return next(c)
		}
		if srv.routing == nil || c.Request().Header.Get(forwardedHeader) != "" {
			return notFound(c, "room_not_found", "no such room")
		}
		return srv.proxyToOwner(c, name)
	}
}

// proxyToOwner asks the directory which instance holds the room, and
// passes the request there, token and all: the owner checks the token
// again. A proxied request is transparent to the caller, whatever its
// HTTP client does with redirects and Authorization headers.
func (srv *Server) proxyToOwner(c echo.Context, name string) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), placeTimeout)
	owner, ok, err := srv.routing.dir.Locate(ctx, name)
	cancel()
	switch {
	case err != nil:
		return c.JSON(http.StatusServiceUnavailable, apiError{Code: "directory_unavailable",
			Message: "the room directory cannot be asked now; try again"})
	case !ok || owner.ID == srv.routing.dir.Self().ID:
		return notFound(c, "room_not_found", "no such room")
	}
	target, err := srv.ownerURL(owner)
	if err != nil {
		return c.JSON(http.StatusServiceUnavailable, apiError{Code: "directory_unavailable",
			Message: "the room's instance cannot be reached; try again"})
	}
	ctx, cancel = context.WithTimeout(c.Request().Context(), apiProxyTimeout)
	defer cancel()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(forwardedHeader, srv.routing.dir.Self().ID)
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			srv.log.Info("api_proxy_failed", "owner", owner.ID, "err", err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`{"code":"owner_unreachable","message":"the room's instance did not answer"}`))
		},
	}
	proxy.ServeHTTP(c.Response(), c.Request().WithContext(ctx))
	return nil
}

// ownerURL is the base URL the server API reaches owner at. The fleet
// registers only valid URLs: an invalid one is a forged entry, logged.
func (srv *Server) ownerURL(owner fleet.Instance) (*url.URL, error) {
	u, err := url.Parse(owner.URL)
	if err == nil && u.Scheme != "http" && u.Scheme != "https" {
		err = fmt.Errorf("scheme %q", u.Scheme)
	}
	if err != nil {
		srv.log.Warn("owner_url_invalid", "owner", owner.ID, "err", err)
		return nil, err
	}
	return u, nil
}

// describeAPITrack describes p for the API.
func describeAPITrack(p *sfu.Publication) apiTrack {
	return apiTrack{Track: describeTrack(p), Layers: p.Layers()}
}

// describe describes member s for the API.
func (r *room) describe(s *Session) apiParticipant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.describeAPILocked(s)
}

// describeAll describes every member for the API, by identity.
func (r *room) describeAll() []apiParticipant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]apiParticipant, 0, len(r.members))
	for _, s := range r.members {
		out = append(out, r.describeAPILocked(s))
	}
	slices.SortFunc(out, func(a, b apiParticipant) int { return strings.Compare(a.Identity, b.Identity) })
	return out
}

// describeAPILocked is describe for a caller holding r.mu.
func (r *room) describeAPILocked(s *Session) apiParticipant {
	d := apiParticipant{ID: s.id, Identity: s.identity, Metadata: s.Metadata(), Tracks: []apiTrack{}}
	for _, rp := range r.pubs {
		if rp.owner == s {
			d.Tracks = append(d.Tracks, describeAPITrack(rp.pub))
		}
	}
	slices.SortFunc(d.Tracks, func(a, b apiTrack) int { return strings.Compare(a.ID, b.ID) })
	return d
}

// get returns the room called name, or nil.
func (rs *rooms) get(name string) *room {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[name]
}

// list describes every room with a member.
func (rs *rooms) list() []apiRoom {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]apiRoom, 0, len(rs.m))
	for _, r := range rs.m {
		r.mu.Lock()
		if len(r.members) > 0 {
			out = append(out, apiRoom{Name: r.name, Participants: len(r.members), Tracks: len(r.pubs)})
		}
		r.mu.Unlock()
	}
	return out
}
