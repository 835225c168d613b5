package edge

// What one instance carries, measured, and the defaults derived from it.
//
// A capacity is the largest load an instance carried with no loss and a
// p99 forwarding latency under 10 ms (mediaload capacity, with mediaload's
// default media: 400 video and 50 audio packets a second per publisher).
// Two shapes set the defaults:
//
//   - the fan-out (one publisher to N subscribers) carries the most
//     sessions of any shape measured, so MEDIA_MAX_SESSIONS, which
//     refuses joins outright, is derived from it: a bound set from a
//     costlier shape would refuse a webinar's viewers an instance could
//     carry;
//   - rooms of 10 (everyone publishing and receiving everyone else) cost
//     the most per session, so the capacity an instance advertises to the
//     room directory is that one: placement weighs an instance's sessions
//     against what it carries in the costliest shape, beside its CPU
//     share, and new rooms go where there is room for a meeting.
//
// They come from
//
//	taskset -c 0 mediaload capacity -spawn ./media-service -cpus 1 -gomaxprocs 1 -light 3
//	mediaload capacity -spawn ./media-service -gomaxprocs 2 -light 3
//
// on the 2-core build machine (README, Performance, Capacity): at
// GOMAXPROCS=1 the instance on a core of its own and the load generator,
// whose receivers but three read their media at the socket, on the
// other; at 2 both share the two cores, so the 2-core figures are lower
// bounds. The searches are noisy (on the builds of 2026-12-06, b25e980
// and c5b28f5, which forward direct media at the same cost, the fan-out
// came out at 180, 160 and 170 subscribers in three searches at one core
// and at 170, 170 and 190 at two; rooms of 10 at 20 participants in
// every one): each figure is the lowest search, since a bound that
// refuses joins must hold in the worst of them. Steps failed on latency
// first, with the instance using 0.3 to 0.8 of a core: loss came only
// beyond. (The searches of 2026-12-05, on a build whose forwarding cost
// half as much again, found 80 and 105 subscribers and 10 participants.)
const (
	fanoutCapacity1  = 161 // sessions (160 subscribers and the publisher) at GOMAXPROCS=1
	fanoutCapacity2  = 171 // at GOMAXPROCS=2
	meetingCapacity1 = 20  // participants in rooms of 10 at GOMAXPROCS=1
	meetingCapacity2 = 20  // at GOMAXPROCS=2
)

// capacityMargin is the share of the measured capacity MEDIA_MAX_SESSIONS
// admits by default: headroom for what the measurement leaves out (a
// browser's RTCP and retransmissions beyond the synthetic clients', TURN,
// joins and leaves while the room is busy, a neighbour on a shared host).
const capacityMargin = 0.8

// unmeasuredMaxSessions is MEDIA_MAX_SESSIONS's default when a capacity
// is unmeasured (a zero figure above).
const unmeasuredMaxSessions = 500

// capacity is how many sessions of one shape an instance carries at
// GOMAXPROCS 1 (one) and 2 (two); zero values are unmeasured. Beyond two
// cores it scales by the two-core figure per core: an extrapolation, as
// no larger machine was measured.
type capacity struct{ one, two int }

// sessions is the capacity at procs (GOMAXPROCS), 0 when unmeasured.
func (c capacity) sessions(procs int) int {
	switch {
	case c.one <= 0 || c.two <= 0:
		return 0
	case procs <= 1:
		return c.one
	}
	return c.two * procs / 2
}

// maxSessions is MEDIA_MAX_SESSIONS's default at procs: the capacity
// with its margin, at least 1, or unmeasuredMaxSessions.
func (c capacity) maxSessions(procs int) int {
	n := c.sessions(procs)
	if n == 0 {
		return unmeasuredMaxSessions
	}
	return max(1, int(float64(n)*capacityMargin))
}

// SessionCapacity is how many sessions in rooms of 10, the costliest
// shape measured, an instance whose GOMAXPROCS is procs carries, without
// margin (0: not measured). The fleet weighs an instance's sessions
// against it.
func SessionCapacity(procs int) int { return meetingCapacity().sessions(procs) }

// meetingCapacity and fanoutCapacity are this build's, from the figures
// above.
func meetingCapacity() capacity { return capacity{one: meetingCapacity1, two: meetingCapacity2} }
func fanoutCapacity() capacity  { return capacity{one: fanoutCapacity1, two: fanoutCapacity2} }

// DeriveDefaults fills in the defaults that depend on the machine: with
// MaxSessions unset (0), the fan-out's measured capacity at procs
// (GOMAXPROCS) with its margin, kept below MaxConns when that bound is on (every
// session holds a connection, and Validate requires MaxConns above it).
// cmd/media-service calls it with the process's GOMAXPROCS before
// Validate.
func (c *Config) DeriveDefaults(procs int) {
	c.deriveDefaults(fanoutCapacity(), procs)
}

func (c *Config) deriveDefaults(m capacity, procs int) {
	if c.MaxSessions != 0 {
		return
	}
	c.MaxSessions = m.maxSessions(procs)
	if c.MaxConns > 0 {
		c.MaxSessions = min(c.MaxSessions, c.MaxConns-1)
	}
}
