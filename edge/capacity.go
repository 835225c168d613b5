package edge

// What one instance carries, measured, and the defaults derived from it.
//
// The figures are meeting participants in rooms of 10, everyone
// publishing audio and video (mediaload's default media: 400 video and
// 50 audio packets a second) and receiving everyone else: of the shapes
// measured, a participant of it costs the instance the most (nine streams
// in, its own out to nine), so a bound set from it holds for smaller
// rooms and for fan-outs. They come from
//
//	mediaload capacity -spawn ./media-service -shapes meeting-10 -gomaxprocs 1
//	mediaload capacity -spawn ./media-service -shapes meeting-10 -gomaxprocs 2
//
// run on a quiet machine (the load generator shares it, so both runs of
// the figures must be on the same machine): the largest step with no loss
// and a p99 forwarding latency under 10 ms.
//
// Both are 0, unmeasured: on the 2-core build machine the runs (README,
// Performance, Capacity; 2026-12-05) found 10 participants at
// GOMAXPROCS=1 and fewer than 10 at 2, with the instance using under
// three quarters of a core at every failing step while the load generator
// took the rest: the machine's limit, not the instance's, and a default
// of 8 sessions a core derived from it would refuse a webinar's 9th
// viewer. Until a run with the load generator on another machine fills
// them, an instance advertises no capacity and MEDIA_MAX_SESSIONS
// defaults to unmeasuredMaxSessions, the fixed default of earlier
// releases.
const (
	meetingCapacity1 = 0 // participants at GOMAXPROCS=1; 0: unmeasured
	meetingCapacity2 = 0 // participants at GOMAXPROCS=2; 0: unmeasured
)

// capacityMargin is the share of the measured capacity MEDIA_MAX_SESSIONS
// admits by default: headroom for what the measurement leaves out (a
// browser's RTCP and retransmissions beyond the synthetic clients', TURN,
// joins and leaves while the room is busy, a neighbour on a shared host).
const capacityMargin = 0.8

// unmeasuredMaxSessions is MEDIA_MAX_SESSIONS's default while the
// capacity is unmeasured.
const unmeasuredMaxSessions = 500

// capacity is how many meeting participants an instance carries at
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

// SessionCapacity is how many sessions an instance whose GOMAXPROCS is
// procs carries at its measured capacity, without margin (0: not
// measured). The fleet weighs an instance's sessions against it.
func SessionCapacity(procs int) int { return measured().sessions(procs) }

// measured is the capacity of this build, from the figures above.
func measured() capacity { return capacity{one: meetingCapacity1, two: meetingCapacity2} }

// DeriveDefaults fills in the defaults that depend on the machine: with
// MaxSessions unset (0), the measured capacity at procs (GOMAXPROCS)
// with its margin, kept below MaxConns when that bound is on (every
// session holds a connection, and Validate requires MaxConns above it).
// cmd/media-service calls it with the process's GOMAXPROCS before
// Validate.
func (c *Config) DeriveDefaults(procs int) {
	c.deriveDefaults(measured(), procs)
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
