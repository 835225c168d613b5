package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// placeAttempts bounds the claims one Place makes: each lost claim names
// a winner, which is followed unless it was itself stale; a store full of
// stale winners is not worth more round trips for one join.
const placeAttempts = 3

// errNotRegistered is why a placement found no instance before Run's
// first registration; Place answers it as ErrUnavailable.
var errNotRegistered = errors.New("fleet: this instance is not registered yet")

// Place returns room's owner: its current one if that is registered now
// under the entry's URL and serving, else the instance it claims the room
// for (see the package doc). owner.ID == Self().ID means "serve it here".
// Under any race, every caller gets the same owner. When the store cannot
// be reached, Place returns this instance for a room it holds and
// ErrUnavailable for any other.
func (f *Fleet) Place(ctx context.Context, room, clientRegion string) (Instance, error) {
	owner, err := f.place(ctx, room, clientRegion)
	if err != nil {
		if ctx.Err() == nil && f.holds(room) {
			owner, err = f.Self(), nil
		} else if !errors.Is(err, ErrFull) {
			return Instance{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	if err == nil {
		f.m.joinPlaced(owner.ID == f.Self().ID)
	}
	return owner, err
}

// place is Place with the store answering.
func (f *Fleet) place(ctx context.Context, room, region string) (Instance, error) {
	cur, ok, err := timedFound(f.m, opLookup, func() (Claim, bool, error) { return f.store.Lookup(ctx, room) })
	if err != nil {
		return Instance{}, err
	}
	for range placeAttempts {
		if ok {
			owner, live, err := f.follow(ctx, room, cur)
			if err != nil || live {
				return owner, err
			}
		}
		pick, err := f.pick(ctx, region, "")
		if err != nil {
			return Instance{}, err
		}
		mine := newClaim(pick)
		won, err := timed(f.m, opClaim, func() (Claim, error) { return f.store.Claim(ctx, room, cur, mine, f.ttl) })
		if err != nil {
			return Instance{}, err
		}
		if won == mine {
			f.note(room, mine)
			f.notePlaced(pick.ID)
			return pick, nil
		}
		f.m.conflicts.Add(bg, 1)
		cur, ok = won, !won.IsZero()
	}
	return Instance{}, fmt.Errorf("fleet: place %q: no live owner after %d claims", room, placeAttempts)
}

// follow returns c's owner and whether it may be followed: registered now
// under c's URL, and serving.
func (f *Fleet) follow(ctx context.Context, room string, c Claim) (Instance, bool, error) {
	owner, live, err := timedFound(f.m, opInstance, func() (Instance, bool, error) { return f.store.Instance(ctx, c.Owner) })
	if err != nil || !live || owner.URL != c.URL || owner.Draining {
		return Instance{}, false, err
	}
	f.note(room, c)
	return owner, true, nil
}

// pick returns the least-loaded serving instance of the registry, in
// region first, exclude left out; ErrFull if none.
func (f *Fleet) pick(ctx context.Context, region, exclude string) (Instance, error) {
	insts, err := timed(f.m, opInstances, func() ([]Instance, error) { return f.store.Instances(ctx) })
	if err != nil {
		return Instance{}, err
	}
	f.countPlaced(insts)
	in, ok := leastLoaded(insts, region, f.Self().ID, exclude)
	if !ok {
		f.mu.Lock()
		registered := f.registered
		f.mu.Unlock()
		if !registered {
			// Run has not registered this instance yet (it has just
			// started, or the store has not answered since): "full"
			// would be wrong, and it is soon over.
			return Instance{}, errNotRegistered
		}
		return Instance{}, ErrFull
	}
	return in, nil
}

// notePlaced records a new room claimed for instance id.
func (f *Fleet) notePlaced(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.placed = append(f.placed, placement{id, time.Now()})
}

// countPlaced adds to insts' room counts the rooms this Fleet placed on
// them within the last renewal interval, which their registrations may not
// show yet, and forgets older ones.
func (f *Fleet) countPlaced(insts []Instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cutoff := time.Now().Add(-f.every)
	for len(f.placed) > 0 && f.placed[0].at.Before(cutoff) {
		f.placed = f.placed[1:]
	}
	for _, p := range f.placed {
		for i := range insts {
			if insts[i].ID == p.id {
				insts[i].Load.Rooms++
			}
		}
	}
}

// note keeps a claim naming this instance that Place answered, for the
// Hold that follows; a held room's claim is updated instead.
func (f *Fleet) note(room string, c Claim) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Owner != f.self.ID {
		return
	}
	if _, ok := f.held[room]; ok {
		f.held[room] = c
		return
	}
	f.seen[room] = seen{c, time.Now()}
}

// holds reports whether room is held here.
func (f *Fleet) holds(room string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.held[room]
	return ok
}

// PickSibling returns the instance this one's rooms should move to when it
// drains: serving, below its bounds, in this instance's region first,
// least loaded, not this instance. It reports false when there is none.
func (f *Fleet) PickSibling(ctx context.Context) (Instance, bool, error) {
	self := f.Self()
	in, err := f.pick(ctx, self.Region, self.ID)
	if errors.Is(err, ErrFull) {
		return Instance{}, false, nil
	}
	if err != nil {
		return Instance{}, false, fmt.Errorf("fleet: pick sibling: %w", err)
	}
	return in, true, nil
}

// Move hands room's directory entry to `to`, atomically and only if it is
// still this instance's claim; ErrNotOwner if it is not (Place then tells
// where the room is). The room is no longer held here.
func (f *Fleet) Move(ctx context.Context, room string, to Instance) error {
	f.mu.Lock()
	c, held := f.held[room]
	self := f.self
	f.mu.Unlock()
	if !held || c.IsZero() {
		cur, ok, err := timedFound(f.m, opLookup, func() (Claim, bool, error) { return f.store.Lookup(ctx, room) })
		if err != nil {
			return fmt.Errorf("fleet: move %q: %w", room, err)
		}
		if !ok || cur.Owner != self.ID || cur.URL != self.URL {
			return ErrNotOwner
		}
		c = cur
	}
	next := newClaim(to)
	won, err := timed(f.m, opClaim, func() (Claim, error) { return f.store.Claim(ctx, room, c, next, f.ttl) })
	if err != nil {
		return fmt.Errorf("fleet: move %q: %w", room, err)
	}
	if won != next {
		return ErrNotOwner
	}
	f.mu.Lock()
	if _, ok := f.held[room]; ok {
		delete(f.held, room)
		f.m.owned.Add(bg, -1)
	}
	f.mu.Unlock()
	return nil
}
