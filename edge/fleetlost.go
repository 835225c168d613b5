package edge

import (
	"context"
	"time"
)

// followLost moves the participants of every room the directory gave to
// another instance while this one could not renew its claim (a store
// outage, a lapsed lease): they are told, as a drain tells them, to join
// at the room's owner, so the room is whole again there. It runs until
// ctx ends.
func (srv *Server) followLost(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case room := <-srv.routing.dir.Lost():
			srv.roomLost(ctx, room)
		}
	}
}

// roomLost asks where a lost room lives now and sends its participants
// there. If the directory answers with this instance after all (the room
// was placed here again), the room is held again.
func (srv *Server) roomLost(ctx context.Context, room string) {
	ctx, cancel := context.WithTimeout(ctx, placeTimeout)
	defer cancel()
	self := srv.routing.dir.Self()
	owner, err := srv.routing.dir.Place(ctx, room, self.Region)
	if err != nil {
		srv.log.Warn("lost_room_not_placed", "room", room, "err", err)
		return
	}
	if owner.ID == self.ID {
		srv.routing.dir.Hold(room)
		return
	}
	url, err := SignalingURL(owner.URL)
	if err != nil {
		srv.log.Warn("lost_room_owner_invalid", "room", room, "owner", owner.ID, "err", err)
		return
	}
	members := srv.rooms.membersOf(room)
	srv.log.Info("lost_room_moving", "room", room, "to", owner.ID, "participants", len(members))
	deadline := time.Now().Add(srv.cfg.DrainTimeout)
	for _, s := range members {
		s.notifyDraining(deadline, url)
	}
}

// membersOf returns the members of the room called name now.
func (rs *rooms) membersOf(name string) []*Session {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r, ok := rs.m[name]
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.membersExcept(nil)
}
