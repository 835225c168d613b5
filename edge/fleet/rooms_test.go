package fleet_test

import (
	"testing"
	"time"

	"github.com/media-service/media-service/edge/fleet"
)

// Rooms lists every room the directory holds, each with its owner, and
// tells a live owner from one that is gone or named under another URL.
func TestRoomsListsTheDirectory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		bm := join(t, open(t), "b", "fra", fleet.Load{})
		for _, p := range []struct {
			m          *member
			room, want string
		}{{a, "r1", "a"}, {a, "r2", "a"}, {bm, "r3", "b"}} {
			if owner, err := p.m.Place(t.Context(), p.room, p.m.Self().Region); err != nil || owner.ID != p.want {
				t.Fatalf("Place(%s) = %s, %v; want %s", p.room, owner.ID, err, p.want)
			}
		}
		for _, forged := range []struct {
			room string
			c    fleet.Claim
		}{
			{"ghost", fleet.Claim{Owner: "gone", URL: "http://gone.test", Token: "t1"}},
			{"moved", fleet.Claim{Owner: "a", URL: "http://elsewhere.test", Token: "t2"}},
		} {
			if _, err := a.store.Claim(t.Context(), forged.room, fleet.Claim{}, forged.c, time.Minute); err != nil {
				t.Fatalf("store.Claim(%s): %v", forged.room, err)
			}
		}
		rooms, truncated, err := bm.Rooms(t.Context())
		if err != nil || truncated {
			t.Fatalf("Rooms() = %v, truncated %v; want no error, not truncated", err, truncated)
		}
		want := []struct {
			room, owner string
			live        bool
		}{{"ghost", "gone", false}, {"moved", "a", false}, {"r1", "a", true}, {"r2", "a", true}, {"r3", "b", true}}
		if len(rooms) != len(want) {
			t.Fatalf("Rooms() = %+v; want %d rooms", rooms, len(want))
		}
		for i, w := range want {
			if got := rooms[i]; got.Room != w.room || got.Owner.ID != w.owner || got.Live != w.live {
				t.Errorf("Rooms()[%d] = %s owned by %s (live %v); want %s by %s (live %v)",
					i, got.Room, got.Owner.ID, got.Live, w.room, w.owner, w.live)
			}
		}
		if r3 := rooms[4]; r3.Owner.URL != "http://b.test" || r3.Owner.Region != "fra" {
			t.Errorf("r3's owner = %+v; want b as registered, at http://b.test in fra", r3.Owner)
		}
		if got, err := a.store.Rooms(t.Context(), 2); err != nil || len(got) != 2 {
			t.Errorf("store.Rooms(limit 2) = %d entries, %v; want 2", len(got), err)
		}
	})
}
