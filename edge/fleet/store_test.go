package fleet_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/fleet"
)

// The Store primitives behave alike on both implementations: leases
// expire, and every write of a room entry happens only over the entry the
// writer expects.
func TestStoreContract(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		s := open(t)
		ctx := t.Context()
		t.Run("registry", func(t *testing.T) {
			in := fleet.Instance{ID: "x", Region: "ams", URL: "http://x.test", Load: fleet.Load{Sessions: 3}}
			if renewed, err := s.Register(ctx, in, time.Minute); err != nil || renewed {
				t.Errorf("first Register = %v, %v; want false, nil", renewed, err)
			}
			if renewed, err := s.Register(ctx, in, time.Minute); err != nil || !renewed {
				t.Errorf("second Register = %v, %v; want true, nil", renewed, err)
			}
			if got, ok, err := s.Instance(ctx, "x"); err != nil || !ok || got != in {
				t.Errorf("Instance(x) = %+v, %v, %v; want %+v", got, ok, err, in)
			}
			if _, err := s.Register(ctx, fleet.Instance{ID: "short", URL: "http://s.test"}, 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			eventually(t, "short's lease expired", func() bool {
				_, ok, err := s.Instance(ctx, "short")
				return err == nil && !ok
			})
			all, err := s.Instances(ctx)
			if err != nil || len(all) != 1 || all[0] != in {
				t.Errorf("Instances() = %+v, %v; want only x", all, err)
			}
			if err := s.Deregister(ctx, "x"); err != nil {
				t.Fatal(err)
			}
			if _, ok, err := s.Instance(ctx, "x"); err != nil || ok {
				t.Errorf("Instance(x) after Deregister: ok = %v, %v; want false", ok, err)
			}
		})
		t.Run("directory", func(t *testing.T) {
			c1 := fleet.Claim{Owner: "x", URL: "http://x.test", Token: "1"}
			c2 := fleet.Claim{Owner: "y", URL: "http://y.test", Token: "2"}
			c3 := fleet.Claim{Owner: "x", URL: "http://x.test", Token: "3"}
			// renew renews r's claim c and reports whether it was renewed.
			renew := func(c fleet.Claim) (bool, error) {
				stale, err := s.Renew(ctx, map[string]fleet.Claim{"r": c}, time.Minute)
				return len(stale) == 0, err
			}
			steps := []struct {
				name string
				do   func() (any, error)
				want any
			}{
				{"Lookup(empty)", func() (any, error) { c, _, err := s.Lookup(ctx, "r"); return c, err }, fleet.Claim{}},
				{"Renew(none)", func() (any, error) { return renew(c1) }, false},
				{"Claim(none→c1)", func() (any, error) { return s.Claim(ctx, "r", fleet.Claim{}, c1, time.Minute) }, c1},
				{"Claim(none→c2) over c1", func() (any, error) { return s.Claim(ctx, "r", fleet.Claim{}, c2, time.Minute) }, c1},
				{"Renew(c1)", func() (any, error) { return renew(c1) }, true},
				{"Claim(c1→c2)", func() (any, error) { return s.Claim(ctx, "r", c1, c2, time.Minute) }, c2},
				{"Renew(stale c1)", func() (any, error) { return renew(c1) }, false},
				{"Release(stale c1)", func() (any, error) { return s.Release(ctx, "r", c1) }, false},
				{"Claim(stale c1→c3)", func() (any, error) { return s.Claim(ctx, "r", c1, c3, time.Minute) }, c2},
				{"Lookup", func() (any, error) { c, _, err := s.Lookup(ctx, "r"); return c, err }, c2},
				{"Release(c2)", func() (any, error) { return s.Release(ctx, "r", c2) }, true},
				{"Lookup(released)", func() (any, error) { c, _, err := s.Lookup(ctx, "r"); return c, err }, fleet.Claim{}},
				{"Claim(none→c3) short", func() (any, error) { return s.Claim(ctx, "r", fleet.Claim{}, c3, 300*time.Millisecond) }, c3},
			}
			for _, st := range steps {
				got, err := st.do()
				if err != nil || got != st.want {
					t.Fatalf("%s = %+v, %v; want %+v", st.name, got, err, st.want)
				}
			}
			eventually(t, "the short claim expired", func() bool {
				_, ok, err := s.Lookup(ctx, "r")
				return err == nil && !ok
			})
		})
		t.Run("renew many", func(t *testing.T) {
			// More rooms than one Redis script call takes, every other one
			// claimed by someone else: exactly those come back stale.
			mine, want := map[string]fleet.Claim{}, []string{}
			for i := range 600 {
				room := fmt.Sprintf("m%03d", i)
				c := fleet.Claim{Owner: "x", URL: "http://x.test", Token: room}
				if i%2 == 1 {
					want = append(want, room)
					c.Token = "other"
				}
				if _, err := s.Claim(ctx, room, fleet.Claim{}, c, time.Minute); err != nil {
					t.Fatal(err)
				}
				mine[room] = fleet.Claim{Owner: "x", URL: "http://x.test", Token: room}
			}
			stale, err := s.Renew(ctx, mine, time.Minute)
			slices.Sort(stale)
			if err != nil || !slices.Equal(stale, want) {
				t.Errorf("Renew(600 rooms) stale = %d rooms, %v; want the %d claimed by another", len(stale), err, len(want))
			}
		})
	})
}
