package edge

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// moveTimeout bounds the moving of every room at the start of a drain (a
// directory round trip or two per room). Rooms not moved by then drain as
// an instance alone does: their clients reconnect through the fleet's
// entry, which places the room anew.
const moveTimeout = 5 * time.Second

// Results of a room's move: the values of media_rooms_moved_total's
// result attribute.
const (
	moveOK        = "moved"
	moveNoSibling = "no_sibling"
	moveFailed    = "failed"
)

// moveRooms is the drain's part in a fleet: it marks this instance
// draining in the registry, so no room is placed here any more, then
// hands each room's directory entry to a sibling and records the
// sibling's signaling URL, which the `draining` message of each of the
// room's participants names. Participants of one room are all sent to
// one instance, so the room moves whole. Alone, it does nothing.
func (srv *Server) moveRooms(deadline time.Time) {
	if srv.routing == nil {
		return
	}
	srv.routing.dir.SetDraining()
	ctx, cancel := context.WithTimeout(context.Background(), min(moveTimeout, time.Until(deadline)/2))
	defer cancel()
	counts := map[string]int{}
	for _, name := range srv.rooms.names() {
		result := srv.moveRoom(ctx, name)
		counts[result]++
		srv.routing.moved.Add(bg, 1, metric.WithAttributes(attribute.String("result", result)))
	}
	srv.log.Info("rooms_moved", "moved", counts[moveOK], "no_sibling", counts[moveNoSibling], "failed", counts[moveFailed])
}

// moveRoom moves one room to the sibling the fleet picks for it and
// returns the result.
func (srv *Server) moveRoom(ctx context.Context, name string) string {
	log := srv.log.With("room", name)
	to, ok, err := srv.routing.dir.PickSibling(ctx)
	if err != nil {
		log.Warn("room_move_failed", "step", "pick_sibling", "err", err)
		return moveFailed
	}
	if !ok {
		return moveNoSibling
	}
	url, err := SignalingURL(to.URL)
	if err != nil {
		log.Warn("room_move_failed", "step", "sibling_url", "to", to.ID, "err", err)
		return moveFailed
	}
	if err := srv.routing.dir.Move(ctx, name, to); err != nil {
		log.Warn("room_move_failed", "step", "move", "to", to.ID, "err", err)
		return moveFailed
	}
	srv.routing.mu.Lock()
	srv.routing.moves[name] = url
	srv.routing.mu.Unlock()
	log.Info("room_moved", "to", to.ID)
	return moveOK
}

// movedTo is the signaling URL the room of s moved to in the drain; empty
// when it did not move (alone, no sibling, a failed move).
func (srv *Server) movedTo(s *Session) string {
	if srv.routing == nil || s.room == nil {
		return ""
	}
	srv.routing.mu.Lock()
	defer srv.routing.mu.Unlock()
	return srv.routing.moves[s.room.name]
}

// names returns the names of the rooms now.
func (rs *rooms) names() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]string, 0, len(rs.m))
	for name := range rs.m {
		out = append(out, name)
	}
	return out
}
