package fleet_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/fleet"
	"go.opentelemetry.io/otel/metric/noop"
)

// Many goroutines on several Fleets placing the same new rooms at once
// all get one owner per room, every time.
func TestPlaceRaceHasOneOwner(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		var members []*member
		for i := range 3 {
			members = append(members, join(t, open(t), fmt.Sprintf("m%d", i), "ams", fleet.Load{}))
		}
		const rooms, callers = 20, 8
		owners := make([][]string, rooms)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for r := range rooms {
			for c := range callers {
				m := members[(r+c)%len(members)]
				wg.Go(func() {
					owner, err := m.Place(t.Context(), fmt.Sprintf("room-%d", r), "ams")
					if err != nil {
						t.Errorf("Place(room-%d) on %s: %v", r, m.Self().ID, err)
						return
					}
					mu.Lock()
					owners[r] = append(owners[r], owner.ID)
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		for r, got := range owners {
			for _, id := range got {
				if id != got[0] {
					t.Errorf("owners of room-%d = %v; want one owner", r, got)
					break
				}
			}
		}
	})
}

// A room whose owner stopped renewing (its lease lapsed) is placed again
// on the next Place, on a live instance.
func TestLapsedOwnerIsReplaced(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		owner, err := a.Place(t.Context(), "r", "ams")
		if err != nil || owner.ID != "a" {
			t.Fatalf("Place(r) on a alone = %s, %v; want a", owner.ID, err)
		}
		a.Hold("r")
		bm := join(t, open(t), "b", "ams", fleet.Load{})
		if owner, err := bm.Place(t.Context(), "r", "ams"); err != nil || owner.ID != "a" {
			t.Fatalf("Place(r) on b while a renews = %s, %v; want a", owner.ID, err)
		}
		a.stop() // a crashed: no renewal, no Close
		eventually(t, "a's lease lapsed", func() bool {
			_, ok, err := bm.store.Instance(t.Context(), "a")
			return err == nil && !ok
		})
		if owner, err := bm.Place(t.Context(), "r", "ams"); err != nil || owner.ID != "b" {
			t.Errorf("Place(r) on b after a lapsed = %s, %v; want b", owner.ID, err)
		}
	})
}

// An entry that names an unregistered instance, or a registered one under
// another URL, is never returned: the room is placed again.
func TestForgedEntryIsReplaced(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		for _, forged := range []fleet.Claim{
			{Owner: "ghost", URL: "http://ghost.test", Token: "t1"},
			{Owner: "a", URL: "http://evil.test", Token: "t2"},
		} {
			room := "room-" + forged.Token
			if got, err := a.store.Claim(t.Context(), room, fleet.Claim{}, forged, time.Minute); err != nil || got != forged {
				t.Fatalf("store.Claim(%s, forged) = %v, %v", room, got, err)
			}
			owner, err := a.Place(t.Context(), room, "ams")
			if err != nil || owner.ID != "a" || owner.URL != "http://a.test" {
				t.Errorf("Place(%s) over forged %+v = %+v, %v; want a at http://a.test", room, forged, owner, err)
			}
			cur, _, err := a.store.Lookup(t.Context(), room)
			if err != nil || cur == forged || cur.Owner != "a" || cur.URL != "http://a.test" {
				t.Errorf("entry of %s after Place = %+v, %v; want a new claim for a", room, cur, err)
			}
		}
	})
}

// placementFleet starts instances of several regions and loads: a1 and a2
// serve in ams (a2 less loaded), f1 serves in fra (idle), a3 drains and a4
// is full (both idle, in ams).
func placementFleet(t *testing.T, b backend) map[string]*member {
	t.Helper()
	open, _ := b.start(t)
	ms := map[string]*member{
		"a1": join(t, open(t), "a1", "ams", fleet.Load{Sessions: 50, MaxSessions: 100}),
		"a2": join(t, open(t), "a2", "ams", fleet.Load{Sessions: 10, MaxSessions: 100}),
		"f1": join(t, open(t), "f1", "fra", fleet.Load{MaxSessions: 100}),
		"a3": join(t, open(t), "a3", "ams", fleet.Load{MaxSessions: 100}),
		"a4": join(t, open(t), "a4", "ams", fleet.Load{Rooms: 5, MaxRooms: 5, MaxSessions: 100}),
	}
	ms["a3"].SetDraining()
	if in, _, _ := ms["a1"].store.Instance(t.Context(), "a3"); !in.Draining {
		t.Fatalf("a3 after SetDraining: registry has %+v; want draining", in)
	}
	return ms
}

// Placement takes the client's region first, then the least loaded,
// never a draining or full instance.
func TestPlacementPrefersRegionThenLoad(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ms := placementFleet(t, b)
		for i, tc := range []struct{ on, region, want string }{
			{"f1", "ams", "a2"}, // least loaded of ams, though f1 is idle
			{"a1", "fra", "f1"},
			{"a2", "syd", "f1"}, // no one in syd: least loaded anywhere
			{"a4", "", "f1"},
		} {
			room := fmt.Sprintf("p%d", i)
			owner, err := ms[tc.on].Place(t.Context(), room, tc.region)
			if err != nil || owner.ID != tc.want {
				t.Errorf("Place(%s, %q) on %s = %s, %v; want %s", room, tc.region, tc.on, owner.ID, err, tc.want)
			}
		}
		// With every serving instance full or draining, a new room gets
		// ErrFull, and a placed one keeps its owner.
		for _, id := range []string{"a1", "a2", "f1"} {
			ms[id].SetDraining()
		}
		if _, err := ms["a1"].Place(t.Context(), "new", "ams"); !errors.Is(err, fleet.ErrFull) {
			t.Errorf("Place(new) with no serving instance: err = %v; want ErrFull", err)
		}
	})
}

// PickSibling: serving, not full, same region first, least loaded, never
// self; none when no other instance serves.
func TestPickSibling(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ms := placementFleet(t, b)
		for _, tc := range []struct{ on, want string }{
			{"a1", "a2"}, {"a2", "a1"}, {"a3", "a2"}, {"f1", "a2"},
		} {
			got, ok, err := ms[tc.on].PickSibling(t.Context())
			if err != nil || !ok || got.ID != tc.want {
				t.Errorf("PickSibling() on %s = %s, %v, %v; want %s", tc.on, got.ID, ok, err, tc.want)
			}
		}
		ms["a2"].SetDraining()
		ms["f1"].SetDraining()
		if got, ok, err := ms["a1"].PickSibling(t.Context()); err != nil || ok {
			t.Errorf("PickSibling() on a1, the only one serving = %s, %v, %v; want none", got.ID, ok, err)
		}
	})
}

// Move hands a held room to another instance, which then owns it; a room
// not ours cannot be moved.
func TestMoveOnlyIfOurs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		if owner, err := a.Place(t.Context(), "r", "ams"); err != nil || owner.ID != "a" {
			t.Fatalf("Place(r) on a alone = %s, %v; want a", owner.ID, err)
		}
		a.Hold("r")
		bm := join(t, open(t), "b", "ams", fleet.Load{})
		c := join(t, open(t), "c", "ams", fleet.Load{})
		if err := a.Move(t.Context(), "r", bm.Self()); err != nil {
			t.Fatalf("a.Move(r, b) = %v; want nil", err)
		}
		if owner, err := c.Place(t.Context(), "r", "ams"); err != nil || owner.ID != "b" {
			t.Errorf("Place(r) on c after the move = %s, %v; want b", owner.ID, err)
		}
		if err := a.Move(t.Context(), "r", c.Self()); !errors.Is(err, fleet.ErrNotOwner) {
			t.Errorf("a.Move(r, c) after moving it away = %v; want ErrNotOwner", err)
		}
		if err := c.Move(t.Context(), "r", c.Self()); !errors.Is(err, fleet.ErrNotOwner) {
			t.Errorf("c.Move(r, c), a room of b = %v; want ErrNotOwner", err)
		}
		if owner, err := a.Place(t.Context(), "r", "ams"); err != nil || owner.ID != "b" {
			t.Errorf("Place(r) on a after the refused moves = %s, %v; want b", owner.ID, err)
		}
	})
}

// A held room whose entry another instance took over (here written
// straight to the store, as a placement after a lapse would) is reported
// on Lost, and the old owner's renewals never write over the new claim.
func TestStaleOwnerCannotOverwrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		bm := join(t, open(t), "b", "ams", fleet.Load{})
		if owner, err := a.Place(t.Context(), "r", "ams"); err != nil || owner.ID != "a" {
			t.Fatalf("Place(r) on a = %s, %v; want a (ties go to the placer)", owner.ID, err)
		}
		a.Hold("r")
		old, _, err := a.store.Lookup(t.Context(), "r")
		if err != nil || old.Owner != "a" {
			t.Fatalf("entry of r = %+v, %v; want a's claim", old, err)
		}
		newer := fleet.Claim{Owner: "b", URL: "http://b.test", Token: "newer"}
		if got, err := bm.store.Claim(t.Context(), "r", old, newer, time.Minute); err != nil || got != newer {
			t.Fatalf("store.Claim(r, a's, b's) = %+v, %v; want b's", got, err)
		}
		a.waitLost(t, "r")
		a.Release("r") // edge releases the room once its participants left
		if err := a.Move(t.Context(), "r", a.Self()); !errors.Is(err, fleet.ErrNotOwner) {
			t.Errorf("a.Move(r) of b's room = %v; want ErrNotOwner", err)
		}
		// Several more renewal passes of a: b's claim stands.
		time.Sleep(testTTL)
		if cur, _, err := a.store.Lookup(t.Context(), "r"); err != nil || cur != newer {
			t.Errorf("entry of r after a's renewals and release = %+v, %v; want b's %+v", cur, err, newer)
		}
		if n, _ := a.metric(t, "media_fleet_rooms_lost"); n != 1 {
			t.Errorf("media_fleet_rooms_lost on a = %v; want 1", n)
		}
	})
}

// Release drops the room's claim; Close drops the held rooms' claims and
// the registration, so the fleet places them again at once.
func TestReleaseAndClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		for _, room := range []string{"r1", "r2"} {
			if owner, err := a.Place(t.Context(), room, "ams"); err != nil || owner.ID != "a" {
				t.Fatalf("Place(%s) on a = %s, %v; want a", room, owner.ID, err)
			}
			a.Hold(room)
		}
		if n, _ := a.metric(t, "media_fleet_rooms_owned"); n != 2 {
			t.Errorf("media_fleet_rooms_owned = %v; want 2", n)
		}
		a.Release("r1")
		eventually(t, "r1's claim released", func() bool {
			_, ok, err := a.store.Lookup(t.Context(), "r1")
			return err == nil && !ok
		})
		a.stop()
		if err := a.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second Close() = %v; want nil", err)
		}
		if _, ok, err := a.store.Lookup(t.Context(), "r2"); err != nil || ok {
			t.Errorf("r2 after Close: entry present = %v, %v; want none", ok, err)
		}
		if _, ok, err := a.store.Instance(t.Context(), "a"); err != nil || ok {
			t.Errorf("a after Close: registered = %v, %v; want not", ok, err)
		}
		if n, _ := a.metric(t, "media_fleet_rooms_owned"); n != 0 {
			t.Errorf("media_fleet_rooms_owned after Close = %v; want 0", n)
		}
	})
}

// A room held without a Place before it (edge serving a room the
// directory does not know of yet) is claimed at the next renewal; one
// another instance owns is reported lost instead of being taken.
func TestHoldClaimsAtRenewal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		bm := join(t, open(t), "b", "ams", fleet.Load{})
		if owner, err := bm.Place(t.Context(), "theirs", "ams"); err != nil || owner.ID != "b" {
			t.Fatalf("Place(theirs) on b = %s, %v; want b", owner.ID, err)
		}
		bm.Hold("theirs")
		a.Hold("fresh")
		a.Hold("theirs")
		eventually(t, "a claimed fresh", func() bool {
			cur, _, err := a.store.Lookup(t.Context(), "fresh")
			return err == nil && cur.Owner == "a"
		})
		a.waitLost(t, "theirs")
		if owner, err := bm.Place(t.Context(), "theirs", "ams"); err != nil || owner.ID != "b" {
			t.Errorf("Place(theirs) after a held it too = %s, %v; want b", owner.ID, err)
		}
	})
}

// Before Run's first registration, with no other instance serving, Place
// answers ErrUnavailable (try again soon), not ErrFull.
func TestPlaceBeforeRegistration(t *testing.T) {
	cfg := fleet.Config{PublicURL: "http://a.test", LeaseTTL: testTTL}
	f, err := fleet.New(cfg, cfg.Instance("a"), fleet.NewMemoryStore(), testLog(t), noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Place(t.Context(), "r", ""); !errors.Is(err, fleet.ErrUnavailable) {
		t.Errorf("Place before Run = %v; want ErrUnavailable", err)
	}
}

// A burst of new rooms placed from one instance spreads over the equally
// loaded fleet: each placement counts in the rooms placed just before it,
// which the registry does not show yet.
func TestBurstSpreads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		// A placement counts for a renewal interval: make it far longer
		// than the burst, however loaded the machine.
		const ttl = time.Minute
		load := fleet.Load{MaxRooms: 100, MaxSessions: 500}
		a := joinTTL(t, open(t), "a", "ams", load, ttl)
		joinTTL(t, open(t), "b", "ams", load, ttl)
		joinTTL(t, open(t), "c", "ams", load, ttl)
		count := map[string]int{}
		for i := range 6 {
			owner, err := a.Place(t.Context(), fmt.Sprintf("burst-%d", i), "ams")
			if err != nil {
				t.Fatalf("Place(burst-%d) = %v", i, err)
			}
			count[owner.ID]++
		}
		if count["a"] != 2 || count["b"] != 2 || count["c"] != 2 {
			t.Errorf("6 new rooms placed from a went to %v; want 2 on each of a, b, c", count)
		}
	})
}
