package fleet

import (
	"cmp"
	"slices"
)

// Instance is one registered instance of the fleet, as the registry holds
// it (JSON in the store).
type Instance struct {
	// ID names the instance uniquely in the fleet.
	ID string `json:"id"`
	// Region is where it runs (MEDIA_REGION, else FLY_REGION); "" when
	// unknown.
	Region string `json:"region,omitempty"`
	// URL is the public base URL of its signaling, e.g.
	// "https://media-2.example.com" (MEDIA_PUBLIC_URL).
	URL string `json:"url"`
	// App is its Fly app name (FLY_APP_NAME), for fly-replay; "" elsewhere.
	App string `json:"app,omitempty"`
	// Draining is set once the instance drains: it takes no new rooms.
	Draining bool `json:"draining,omitempty"`
	// Load is what it serves now and its bounds.
	Load Load `json:"load"`
}

// Load is what an instance serves and its bounds. A bound of 0 is no bound.
type Load struct {
	Sessions    int `json:"sessions"`
	Rooms       int `json:"rooms"`
	Tracks      int `json:"tracks"`
	MaxSessions int `json:"max_sessions,omitempty"`
	MaxRooms    int `json:"max_rooms,omitempty"`
	// CPU is the share of the instance's CPU in use, 0 to 1.
	CPU float64 `json:"cpu"`
	// Capacity is the sessions the instance carries at its measured
	// capacity for its cores (edge.SessionCapacity); 0 when unmeasured.
	// It is no bound (MaxSessions is): an instance's load is its sessions'
	// share of it, so a fleet of unlike machines fills each by what it
	// carries rather than by its configured bound.
	Capacity int `json:"capacity,omitempty"`
}

// Full reports whether the instance is at one of its bounds: it takes no
// new room.
func (l Load) Full() bool {
	return l.MaxSessions > 0 && l.Sessions >= l.MaxSessions ||
		l.MaxRooms > 0 && l.Rooms >= l.MaxRooms
}

// use is the load as one share, 0 to 1 and above: the highest of the
// sessions' share of their bound and of the capacity, the rooms' share of
// their bound and the CPU.
func (l Load) use() float64 {
	u := l.CPU
	if l.MaxSessions > 0 {
		u = max(u, float64(l.Sessions)/float64(l.MaxSessions))
	}
	if l.Capacity > 0 {
		u = max(u, float64(l.Sessions)/float64(l.Capacity))
	}
	if l.MaxRooms > 0 {
		u = max(u, float64(l.Rooms)/float64(l.MaxRooms))
	}
	return u
}

// serving reports whether the instance may take a new room.
func (i Instance) serving() bool { return !i.Draining && !i.Load.Full() }

// leastLoaded picks among insts the serving one with the lowest load, in
// region first (when any there serves), then anywhere. Ties go to prefer
// (this instance: no redirect), then to fewer sessions, then to the lower
// ID, so every caller ranks alike. exclude is left out. It reports false
// when no instance serves.
func leastLoaded(insts []Instance, region, prefer, exclude string) (Instance, bool) {
	var here, anywhere []Instance
	for _, in := range insts {
		if in.ID == exclude || !in.serving() {
			continue
		}
		anywhere = append(anywhere, in)
		if region != "" && in.Region == region {
			here = append(here, in)
		}
	}
	pool := here
	if len(pool) == 0 {
		pool = anywhere
	}
	if len(pool) == 0 {
		return Instance{}, false
	}
	return slices.MinFunc(pool, func(a, b Instance) int {
		if c := cmp.Compare(a.Load.use(), b.Load.use()); c != 0 {
			return c
		}
		if (a.ID == prefer) != (b.ID == prefer) {
			if a.ID == prefer {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.Load.Sessions, b.Load.Sessions); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	}), true
}
