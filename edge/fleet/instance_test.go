package fleet

import "testing"

func TestLoadFull(t *testing.T) {
	for _, tc := range []struct {
		l    Load
		want bool
	}{
		{Load{}, false},
		{Load{Sessions: 1000, Rooms: 1000}, false}, // no bounds
		{Load{Sessions: 9, MaxSessions: 10}, false},
		{Load{Sessions: 10, MaxSessions: 10}, true},
		{Load{Rooms: 5, MaxRooms: 5, MaxSessions: 10}, true},
		{Load{Sessions: 50, Capacity: 40, MaxSessions: 100}, false}, // beyond capacity, not at a bound
	} {
		if got := tc.l.Full(); got != tc.want {
			t.Errorf("%+v.Full() = %v; want %v", tc.l, got, tc.want)
		}
	}
}

// leastLoaded ranks by the highest share of a bound, of the capacity or
// of CPU, then this instance, then fewer sessions, then the id; region
// first; never a draining, full or excluded one.
func TestLeastLoaded(t *testing.T) {
	in := func(id, region string, l Load) Instance { return Instance{ID: id, Region: region, Load: l} }
	for _, tc := range []struct {
		name           string
		insts          []Instance
		region, prefer string
		exclude, want  string
	}{
		{"share of bounds", []Instance{
			in("a", "r", Load{Sessions: 50, MaxSessions: 100}), // 0.5
			in("b", "r", Load{Sessions: 80, MaxSessions: 400}), // 0.2
		}, "r", "", "", "b"},
		{"rooms share counts", []Instance{
			in("a", "r", Load{Rooms: 9, MaxRooms: 10}),
			in("b", "r", Load{Sessions: 50, MaxSessions: 100}),
		}, "r", "", "", "b"},
		{"share of the capacity", []Instance{
			in("a", "r", Load{Sessions: 30, MaxSessions: 500, Capacity: 40}),  // 0.75
			in("b", "r", Load{Sessions: 60, MaxSessions: 500, Capacity: 120}), // 0.5
		}, "r", "", "", "b"},
		{"capacity is no bound", []Instance{
			in("a", "r", Load{Sessions: 50, MaxSessions: 500, Capacity: 40}),
		}, "r", "", "", "a"},
		{"cpu counts", []Instance{
			in("a", "r", Load{CPU: 0.9}),
			in("b", "r", Load{Sessions: 50, MaxSessions: 100}),
		}, "r", "", "", "b"},
		{"tie goes to self", []Instance{in("a", "r", Load{}), in("b", "r", Load{})}, "r", "b", "", "b"},
		{"then fewer sessions", []Instance{in("a", "r", Load{Sessions: 2}), in("b", "r", Load{Sessions: 1})}, "r", "x", "", "b"},
		{"then the id", []Instance{in("b", "r", Load{}), in("a", "r", Load{})}, "r", "x", "", "a"},
		{"region first", []Instance{in("a", "r", Load{CPU: 0.8}), in("b", "s", Load{})}, "r", "", "", "a"},
		{"any region when none serves there", []Instance{
			{ID: "a", Region: "r", Draining: true},
			in("b", "r", Load{Sessions: 1, MaxSessions: 1}),
			in("c", "s", Load{CPU: 0.9}),
		}, "r", "", "", "c"},
		{"excluded", []Instance{in("a", "r", Load{}), in("b", "r", Load{CPU: 0.5})}, "r", "", "a", "b"},
		{"none", []Instance{{ID: "a", Draining: true}}, "", "", "", ""},
	} {
		got, ok := leastLoaded(tc.insts, tc.region, tc.prefer, tc.exclude)
		if got.ID != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: leastLoaded = %q, %v; want %q", tc.name, got.ID, ok, tc.want)
		}
	}
}
