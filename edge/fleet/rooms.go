package fleet

import (
	"context"
	"slices"
	"strings"
)

// MaxListed bounds the rooms [Fleet.Rooms] returns: a fleet-wide list
// is an operator's or a backend's view, and past this many rooms a
// backend wants its own index (webhooks feed one), not one answer that
// holds them all.
const MaxListed = 10000

// RoomEntry is a room the directory holds an entry for, and its owner.
type RoomEntry struct {
	Room string
	// Owner is the instance the entry names: as registered now when
	// Live, else only its id and the URL the entry names.
	Owner Instance
	// Live reports whether the owner is registered now under the URL
	// the entry names, as Locate requires to follow the entry. A room
	// whose owner is not live is one its instance left without
	// releasing (a crash, a partition): the entry expires within a TTL.
	Live bool
}

// Rooms returns the rooms the directory holds entries for, by name, at
// most MaxListed of them, and whether there were more. Entries no
// instance wrote are left out. Two reads of the store: the entries,
// then the live instances.
func (f *Fleet) Rooms(ctx context.Context) (rooms []RoomEntry, truncated bool, err error) {
	claims, err := timed(f.m, opRooms, func() (map[string]Claim, error) { return f.store.Rooms(ctx, MaxListed+1) })
	if err != nil {
		return nil, false, wrapUnavailable(err)
	}
	insts, err := timed(f.m, opInstances, func() ([]Instance, error) { return f.store.Instances(ctx) })
	if err != nil {
		return nil, false, wrapUnavailable(err)
	}
	byID := make(map[string]Instance, len(insts))
	for _, in := range insts {
		byID[in.ID] = in
	}
	for room, c := range claims {
		if c.Owner == "" {
			continue
		}
		e := RoomEntry{Room: room, Owner: Instance{ID: c.Owner, URL: c.URL}}
		if in, ok := byID[c.Owner]; ok && in.URL == c.URL {
			e.Owner, e.Live = in, true
		}
		rooms = append(rooms, e)
	}
	slices.SortFunc(rooms, func(a, b RoomEntry) int { return strings.Compare(a.Room, b.Room) })
	if len(rooms) > MaxListed {
		rooms = rooms[:MaxListed]
	}
	return rooms, len(claims) > MaxListed, nil
}
