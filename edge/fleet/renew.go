package fleet

import (
	"context"
	"maps"
	"time"
)

// renew is one pass of Run: the lease, then (if the store answered) the
// held rooms' claims, the pending releases and the lost rooms' delivery.
func (f *Fleet) renew(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, f.every)
	defer cancel()
	if f.renewLease(ctx) {
		f.renewRooms(ctx)
		f.releaseRooms(ctx)
	}
	f.deliverLost()
	f.forgetSeen()
}

// renewLease writes this instance's registration with a fresh lease and
// reports whether the store answered. It logs the store going away and
// coming back once each, and counts a lease found lapsed.
func (f *Fleet) renewLease(ctx context.Context) bool {
	self := f.Self()
	renewed, err := timed(f.m, opRegister, func() (bool, error) { return f.store.Register(ctx, self, f.ttl) })
	f.mu.Lock()
	wasUp, registered := f.up, f.registered
	f.up = err == nil
	f.registered = registered || err == nil
	f.mu.Unlock()
	f.m.setStoreUp(err == nil)
	if err != nil {
		f.m.renewFailures.Add(bg, 1)
		if wasUp {
			f.log.Warn("fleet_store_unreachable", "err", err)
		}
		return false
	}
	if !wasUp {
		f.log.Info("fleet_store_reachable")
	}
	if registered && !renewed {
		f.m.lapses.Add(bg, 1)
		f.log.Warn("fleet_lease_lapsed")
	}
	return true
}

// renewRooms renews the claims of every held room in one store call. A
// claim that is gone (expired during an outage, or Redis restarted empty)
// is made again; an entry naming this instance under another token (placed
// here again by another instance) is adopted; an entry naming another
// instance means the room is lost.
func (f *Fleet) renewRooms(ctx context.Context) {
	f.mu.Lock()
	rooms := maps.Clone(f.held)
	self := f.self
	f.mu.Unlock()
	known := maps.Clone(rooms)
	maps.DeleteFunc(known, func(_ string, c Claim) bool { return c.IsZero() })
	var stale []string
	if len(known) > 0 {
		var err error
		stale, err = timed(f.m, opRenew, func() ([]string, error) { return f.store.Renew(ctx, known, f.ttl) })
		if err != nil {
			return // the store is in trouble: the next pass tries again
		}
	}
	todo := map[string]bool{}
	for _, room := range stale {
		todo[room] = true
	}
	for room, c := range rooms {
		if !c.IsZero() && !todo[room] {
			continue
		}
		cur, err := f.reclaim(ctx, room, c, self)
		if err != nil {
			continue
		}
		f.settle(room, c, cur, self)
	}
}

// reclaim claims room for self with c (a new claim if c is zero) if it has
// no entry, and returns the entry in force.
func (f *Fleet) reclaim(ctx context.Context, room string, c Claim, self Instance) (Claim, error) {
	if c.IsZero() {
		c = newClaim(self)
	}
	return timed(f.m, opClaim, func() (Claim, error) { return f.store.Claim(ctx, room, Claim{}, c, f.ttl) })
}

// settle records cur as held room's entry, or the room as lost, unless
// room was released or moved since the pass read c.
func (f *Fleet) settle(room string, c, cur Claim, self Instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if held, ok := f.held[room]; !ok || held != c {
		return
	}
	if cur.Owner == self.ID && cur.URL == self.URL {
		if cur != c {
			f.log.Info("fleet_room_claimed_again", "room", room)
		}
		f.held[room] = cur
		return
	}
	delete(f.held, room)
	f.m.owned.Add(bg, -1)
	f.m.lost.Add(bg, 1)
	f.lostQueue = append(f.lostQueue, room)
	f.log.Warn("fleet_room_lost", "room", room, "owner", cur.Owner)
}

// releaseRooms deletes the claims of released rooms, each only if it is
// still the claim this instance made. One the store did not answer for is
// tried again at the next pass.
func (f *Fleet) releaseRooms(ctx context.Context) {
	f.mu.Lock()
	rooms := maps.Clone(f.releasing)
	f.mu.Unlock()
	for room, c := range rooms {
		if _, err := timed(f.m, opRelease, func() (bool, error) { return f.store.Release(ctx, room, c) }); err != nil {
			continue
		}
		f.mu.Lock()
		if f.releasing[room] == c {
			delete(f.releasing, room)
		}
		f.mu.Unlock()
	}
}

// deliverLost offers the lost rooms to Lost's reader without blocking;
// what does not fit waits for the next pass.
func (f *Fleet) deliverLost() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.lostQueue) > 0 {
		select {
		case f.lost <- f.lostQueue[0]:
			f.lostQueue = f.lostQueue[1:]
		default:
			return
		}
	}
}

// forgetSeen drops the claims Place answered that no Hold took within a
// TTL: no participant joined.
func (f *Fleet) forgetSeen() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for room, s := range f.seen {
		if time.Since(s.at) > f.ttl {
			delete(f.seen, room)
		}
	}
}
