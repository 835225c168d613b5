package edge

import (
	"errors"
	"sync"

	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/webhook"
)

var (
	// errRoomFull: the room has MaxRoomParticipants members or joiners.
	errRoomFull = errors.New("edge: room full")
	// errRoomsFull: the instance has MaxRooms rooms.
	errRoomsFull = errors.New("edge: too many rooms")
)

// rooms holds the instance's rooms by name. A room exists while it has a
// member or a reservation (a join admitted before its WebSocket upgrade),
// and is removed the moment it has neither.
//
// Lock order: rooms.mu before room.mu.
type rooms struct {
	maxRooms, maxMembers int
	metrics              *metrics
	// claims, in a fleet, holds the directory's claim on each room while
	// it exists here and releases it when the room empties (called under
	// mu, so a room's Hold and Release are never reordered); nil alone.
	claims interface {
		Hold(room string)
		Release(room string)
	}

	hooks *webhook.Notifier // every room's events; nil: none

	mu sync.Mutex // guards m, and each room's reserved and members counts as seen from here
	m  map[string]*room
}

// room is a set of participants and their publications.
type room struct {
	name  string
	hooks *webhook.Notifier // nil: no webhooks (webhooks.go)

	mu       sync.Mutex // guards everything below
	reserved int        // admitted joins not yet members
	members  map[string]*Session
	pubs     map[string]roomPub // by publication id

	speakers roomSpeakers // owned by the speakers goroutine, not guarded by mu
	started  bool         // room_started was notified: room_finished will be
}

// roomPub is a publication and the session that publishes it.
type roomPub struct {
	pub   *sfu.Publication
	owner *Session
}

func newRooms(maxRooms, maxMembers int, m *metrics) *rooms {
	return &rooms{maxRooms: maxRooms, maxMembers: maxMembers, metrics: m, m: make(map[string]*room)}
}

// reserve admits one join of identity to the room called name, creating
// the room if needed. A member with the same identity does not count
// toward the limit: the join replaces it (a client reconnecting after a
// network change must not find its own old session filling the room). The
// caller must follow with join or release.
func (rs *rooms) reserve(name, identity string) (*room, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r, ok := rs.m[name]
	if !ok {
		if len(rs.m) >= rs.maxRooms {
			rs.unclaim(name) // the directory may have placed it here
			return nil, errRoomsFull
		}
		r = &room{name: name, hooks: rs.hooks, members: make(map[string]*Session), pubs: make(map[string]roomPub)}
		rs.m[name] = r
		rs.metrics.rooms.Add(bg, 1)
		if rs.claims != nil {
			rs.claims.Hold(name)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.reserved + len(r.members)
	if r.memberWith(identity) != nil {
		n--
	}
	if n >= rs.maxMembers {
		return nil, errRoomFull
	}
	r.reserved++
	return r, nil
}

// release gives back a reservation whose join did not happen.
func (rs *rooms) release(r *room) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reserved--
	rs.removeIfEmpty(r)
}

// removeIfEmpty deletes r when it has no member and no reservation. The
// caller holds rs.mu and r.mu.
func (rs *rooms) removeIfEmpty(r *room) {
	if r.reserved == 0 && len(r.members) == 0 && rs.m[r.name] == r {
		if r.started {
			r.notify(webhook.RoomFinished, nil, nil)
		}
		delete(rs.m, r.name)
		rs.metrics.rooms.Add(bg, -1)
		rs.unclaim(r.name)
	}
}

// unclaim drops the directory's claim on a room that does not exist
// here. The caller holds rs.mu.
func (rs *rooms) unclaim(name string) {
	if rs.claims != nil {
		rs.claims.Release(name)
	}
}

// len is the number of rooms.
func (rs *rooms) len() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.m)
}

// join turns s's reservation into membership and returns the other
// members and the room's publications at that instant. Any publication
// added later is offered to s by addPublication, so s misses none and
// gets none twice. greet runs with the room locked, before any other
// member can see s: what it queues for s comes before anything another
// member's join or leave queues for it.
func (r *room) join(s *Session, greet func(others []*Session)) (others []*Session, pubs []*sfu.Publication) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reserved--
	others = r.membersExcept(s)
	greet(others)
	if !r.started {
		r.started = true
		r.notify(webhook.RoomStarted, nil, nil)
	}
	r.members[s.id] = s
	r.notify(webhook.ParticipantJoined, s, nil)
	for _, p := range r.pubs {
		pubs = append(pubs, p.pub)
	}
	return others, pubs
}

// snapshot runs fn with the room locked and the members other than s, as
// join runs greet: what fn queues for s comes before anything a later
// join or leave queues for it.
func (r *room) snapshot(s *Session, fn func(others []*Session)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r.membersExcept(s))
}

// byIdentity returns the member with that identity, if any.
func (r *room) byIdentity(identity string) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.memberWith(identity)
}

// memberWith is byIdentity for a caller that holds r.mu.
func (r *room) memberWith(identity string) *Session {
	for _, m := range r.members {
		if m.identity == identity {
			return m
		}
	}
	return nil
}

func (r *room) membersExcept(s *Session) []*Session {
	out := make([]*Session, 0, len(r.members))
	for _, m := range r.members {
		if m != s {
			out = append(out, m)
		}
	}
	return out
}

// addPublication records p, published by owner, and returns the members
// to subscribe to it. It refuses (false) when owner is no longer a member.
func (r *room) addPublication(owner *Session, p *sfu.Publication) ([]*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.members[owner.id] != owner {
		return nil, false
	}
	r.pubs[p.ID()] = roomPub{pub: p, owner: owner}
	r.notify(webhook.TrackPublished, owner, p)
	return r.membersExcept(owner), true
}

// removePublication forgets p and returns the members that may hold a
// subscription to it; false when it was already gone.
func (r *room) removePublication(p *sfu.Publication) ([]*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, ok := r.pubs[p.ID()]
	if !ok {
		return nil, false
	}
	delete(r.pubs, p.ID())
	r.notify(webhook.TrackUnpublished, rp.owner, p)
	return r.membersExcept(rp.owner), true
}

// leave removes s and its publications from r, and r from rs when it
// empties. It returns the remaining members and s's publications.
func (rs *rooms) leave(r *room, s *Session) (others []*Session, owned []*sfu.Publication) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.members[s.id] != s {
		return nil, nil
	}
	delete(r.members, s.id)
	for id, p := range r.pubs {
		if p.owner == s {
			owned = append(owned, p.pub)
			delete(r.pubs, id)
			r.notify(webhook.TrackUnpublished, s, p.pub)
		}
	}
	r.notify(webhook.ParticipantLeft, s, nil)
	rs.removeIfEmpty(r)
	return r.membersExcept(s), owned
}
