package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/edge/signal"
)

// Directory is what an instance asks of the fleet: where a room lives,
// and the few things the drain needs. *fleet.Fleet implements it. With
// none (Options.Fleet nil) the instance serves every room itself, alone.
type Directory interface {
	// Self is this instance as the fleet registered it.
	Self() fleet.Instance
	// Place returns the owner of room, claiming it for the best instance
	// when it has none; fleet.ErrUnavailable when the directory cannot
	// be reached and this instance does not hold the room.
	Place(ctx context.Context, room, clientRegion string) (fleet.Instance, error)
	// Locate returns room's owner without placing the room; false when
	// it has none (the server API's routing, api.go).
	Locate(ctx context.Context, room string) (fleet.Instance, bool, error)
	// Rooms lists the rooms the directory holds, with their owners, and
	// whether there were more than it lists (the server API's fleet-wide
	// list, apirooms.go).
	Rooms(ctx context.Context) ([]fleet.RoomEntry, bool, error)
	// Revoke and Revoked share the tokens of removed participants with
	// every instance (revoked.go).
	Revoke(ctx context.Context, key string, until time.Time) error
	Revoked(ctx context.Context, key string) (bool, error)
	// Hold and Release keep and drop this instance's claim on a room
	// while it has participants here. They do not block on the store.
	Hold(room string)
	Release(room string)
	// SetLoad publishes this instance's load for placement.
	SetLoad(fleet.Load)
	// SetDraining marks this instance draining: no room is placed here.
	SetDraining()
	// PickSibling chooses the instance a draining room moves to.
	PickSibling(ctx context.Context) (fleet.Instance, bool, error)
	// Move hands room's directory entry to another instance.
	Move(ctx context.Context, room string, to fleet.Instance) error
	// Lost delivers held rooms the directory gave to another instance.
	Lost() <-chan string
}

// Routing timings.
const (
	// placeTimeout bounds the directory's answer to one join: a store
	// that does not answer in that long is treated as unreachable (503),
	// rather than holding the client's handshake.
	placeTimeout = 3 * time.Second
	// loadInterval is how often the instance's load is handed to the
	// fleet, which publishes it with its lease renewal.
	loadInterval = time.Second
)

// Join results of routing, beside those of rtc.go.
const (
	joinRouted      = "routed"                // sent to the room's owner
	joinUnavailable = "directory_unavailable" // the room directory could not be asked
)

// How a join was sent to the owner: the values of
// media_joins_routed_total's via attribute.
const (
	viaRedirect  = "redirect"   // a `redirect` message the client follows
	viaFlyReplay = "fly_replay" // a fly-replay header Fly's proxy follows
)

// fleetRegion is what a Fly-Region header may carry: Fly's region codes
// are three letters; anything else is ignored.
var fleetRegion = regexp.MustCompile(`^[a-z0-9]{2,8}$`)

// routing is an instance's part in a fleet: the directory, the routing
// metrics and, once the drain has moved rooms, where each went.
type routing struct {
	dir    Directory
	routed metric.Int64Counter // media_joins_routed_total{via}
	moved  metric.Int64Counter // media_rooms_moved_total{result}
	// siblings asks other instances for their rooms (apirooms.go); it
	// follows no redirect, and each request carries its own deadline.
	siblings *http.Client

	mu    sync.Mutex        // guards moves
	moves map[string]string // room -> signaling URL it moved to, set by the drain
}

func newRouting(dir Directory, m metric.Meter) (*routing, error) {
	if dir == nil {
		return nil, nil
	}
	r := &routing{dir: dir, moves: make(map[string]string), siblings: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	var err1, err2 error
	r.routed, err1 = m.Int64Counter("media_joins_routed",
		metric.WithDescription("Joins sent to the instance that owns their room, by how (redirect message or fly-replay)."))
	r.moved, err2 = m.Int64Counter("media_rooms_moved",
		metric.WithDescription("Rooms the drain handed to a sibling instance, by result (moved, no_sibling, failed)."))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("edge: metrics: %w", err)
	}
	for _, via := range []string{viaRedirect, viaFlyReplay} {
		r.routed.Add(bg, 0, metric.WithAttributes(attribute.String("via", via)))
	}
	return r, nil
}

// route asks the directory where the join's room lives. It reports
// whether it answered the request itself (sent it elsewhere, or refused
// it); false means the room is served here.
func (srv *Server) route(c echo.Context, room string) (bool, error) {
	if srv.routing == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), placeTimeout)
	defer cancel()
	owner, err := srv.routing.dir.Place(ctx, room, srv.clientRegion(c.Request()))
	switch {
	case errors.Is(err, fleet.ErrFull):
		return true, srv.refuse(c, http.StatusServiceUnavailable, joinRoomsFull, "full",
			"every instance of the fleet is at its limits")
	case err != nil:
		if !errors.Is(err, fleet.ErrUnavailable) {
			srv.log.Warn("place_failed", "err", err)
		}
		return true, srv.refuse(c, http.StatusServiceUnavailable, joinUnavailable, "directory_unavailable",
			"the room directory cannot place this room now; try again")
	}
	if owner.ID == srv.routing.dir.Self().ID {
		return false, nil
	}
	return true, srv.sendToOwner(c, owner)
}

// clientRegion is the region placement prefers: the one Fly's proxy
// names for the client, else this instance's own.
func (srv *Server) clientRegion(r *http.Request) string {
	if reg := strings.ToLower(r.Header.Get("Fly-Region")); fleetRegion.MatchString(reg) {
		return reg
	}
	return srv.routing.dir.Self().Region
}

// sendToOwner sends a join to the instance that owns its room. On Fly,
// when the owner is another app, the proxy replays the request there
// (fly-replay); a request that was already replayed once is redirected
// instead, so two instances that disagree cannot bounce it through the
// proxy forever. Everywhere else the client is redirected.
func (srv *Server) sendToOwner(c echo.Context, owner fleet.Instance) error {
	self := srv.routing.dir.Self()
	replayed := c.Request().Header.Get("Fly-Replay-Src") != ""
	if self.App != "" && owner.App != "" && owner.App != self.App && !replayed {
		srv.routing.count(viaFlyReplay)
		srv.metrics.join(joinRouted)
		c.Response().Header().Set("Fly-Replay", "app="+owner.App)
		return c.JSON(http.StatusConflict, apiError{Code: "room_elsewhere",
			Message: "the room lives on another instance; the platform's proxy replays this request there"})
	}
	target, err := SignalingURL(owner.URL)
	if err != nil { // the fleet registers only valid URLs: a forged entry
		srv.log.Warn("owner_url_invalid", "owner", owner.ID, "err", err)
		return srv.refuse(c, http.StatusServiceUnavailable, joinUnavailable, "directory_unavailable",
			"the room's instance cannot be reached; try again")
	}
	return srv.redirect(c, target)
}

// redirect upgrades the connection, sends one `redirect` naming target,
// and closes with 1000. The client joins at target with the same token,
// which the owner checks again.
func (srv *Server) redirect(c echo.Context, target string) error {
	conn, err := srv.upgrader.Upgrade(c.Response(), c.Request(), nil)
	if err != nil { // the upgrader has answered the client
		srv.metrics.join(joinUpgradeFail)
		return nil
	}
	defer conn.Close()
	srv.routing.count(viaRedirect)
	srv.metrics.join(joinRouted)
	b, err := signal.Encode(&signal.Message{Type: signal.TypeRedirect, URL: target, Reason: signal.ReasonRoomElsewhere})
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(closeGrace))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return nil // the client went away; nothing to tell it
	}
	_ = conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, signal.ReasonRoomElsewhere), time.Now().Add(closeGrace))
	return nil
}

func (r *routing) count(via string) {
	r.routed.Add(bg, 1, metric.WithAttributes(attribute.String("via", via)))
}

// SignalingURL turns an instance's public base URL (MEDIA_PUBLIC_URL:
// https://host, http://host:port, or ws:// and wss:// alike, with an
// optional path prefix) into the WebSocket URL clients join at.
func SignalingURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("edge: public url %.100q: %w", base, err)
	}
	switch u.Scheme {
	case "https", "wss":
		u.Scheme = "wss"
	case "http", "ws":
		u.Scheme = "ws"
	default:
		return "", fmt.Errorf("edge: public url %.100q: scheme must be http, https, ws or wss", base)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("edge: public url %.100q: want scheme://host[:port][/prefix] and nothing else", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/rtc"
	u.RawPath = ""
	return u.String(), nil
}

// publishLoad hands the instance's load to the fleet every loadInterval
// until ctx ends, so placement sees it at the next lease renewal.
func (srv *Server) publishLoad(ctx context.Context) {
	t := time.NewTicker(loadInterval)
	defer t.Stop()
	for {
		srv.routing.dir.SetLoad(srv.load())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// load is the instance's load now, with its bounds.
func (srv *Server) load() fleet.Load {
	return fleet.Load{
		Sessions: srv.sessions.Len(), Rooms: srv.rooms.len(), Tracks: srv.media.Tracks(),
		MaxSessions: srv.cfg.MaxSessions, MaxRooms: srv.cfg.MaxRooms,
	}
}
