package load

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/pion/transport/v5"
)

// Config is one run. Its zero value is not useful: start from
// DefaultConfig, whose values are the ones documented on each field.
type Config struct {
	// Scenario is fanout, meeting, churn, floor, simulcast, dynacast,
	// capped or capacity (see Describe).
	Scenario string

	// URLs are the HTTP base URLs of the instances under load (signaling
	// is at /v1/rtc). With more than one, Placement says through which
	// one each participant joins. Default: http://127.0.0.1:8080.
	URLs []string
	// Placement is how participants are spread over URLs: PlaceRoundRobin
	// (the default) or PlaceRandom.
	Placement string
	// OpsURLs are the instances' ops base URLs, scraped at /metrics for
	// CPU, memory and goroutines, summed over the instances. Empty: no
	// server numbers. Default: http://127.0.0.1:9091.
	OpsURLs []string
	// APIKey and APISecret sign the participants' tokens; with no secret
	// the public dev pair is used.
	APIKey, APISecret string
	// DevToken fetches tokens from the instance's /v1/dev/token (dev mode)
	// instead of minting them.
	DevToken bool
	// Spawn is a media-service binary to start in dev mode on free ports
	// for the run; it replaces URLs and OpsURLs.
	Spawn string
	// SpawnFleet, when above 0, starts a redis-server on a free loopback
	// port and that many instances of Spawn on it, as a fleet (0).
	SpawnFleet int
	// DrainAfter, with a fleet of at least 2, sends SIGTERM to the
	// instance holding the most participants that long into the measured
	// window; they move to a sibling as the draining message says, and
	// the report gives the media gap each saw (0: no drain).
	DrainAfter time.Duration

	Subscribers  int           // fanout and floor: receivers of the one publisher (50)
	Rooms        int           // meeting (and floor): rooms; 0 with floor means the fanout shape (0)
	Participants int           // meeting: participants per room, all publishing (5)
	Cycles       int           // churn: joins, each one a join, media exchange and leave (100)
	Parallel     int           // churn: participants in the room at once (4)
	Hold         time.Duration // churn: how long each participant stays after its first media (1 s)
	Flaps        int           // churn: network flaps of each participant after its first media (0; see flap.go)

	Media  MediaConfig // what every publisher sends (DefaultMedia)
	Timing Timing      // warm-up 3 s, window 20 s, grace 2 s

	// Floor also measures the bare UDP relay in the run, with the same
	// shape, as the yardstick of the server's CPU per packet (true).
	Floor bool
	// FloorBatch makes the floor relay send each packet's copies with
	// sendmmsg, as the server does, rather than one sendto each (true).
	// The unbatched floor is the slower yardstick of earlier reports.
	FloorBatch bool
	// RelayExe is the mediaload binary, started as `RelayExe floor-relay`
	// for the floor (ServeFloorRelay is what that command runs).
	RelayExe string
	// ChildStderr receives the standard error of the processes a run
	// starts (the floor relay, the -spawn instance): a child that fails
	// says why there. Nil discards it.
	ChildStderr io.Writer

	JoinConcurrency int           // joins in flight at once (10)
	JoinTimeout     time.Duration // a join with no media by then failed (15 s)
	Settle          time.Duration // churn: wait for the server's goroutines to return to the baseline (10 s)
	MaxLoss         float64       // fail the run when loss exceeds this percentage (1)
	// NACK makes participants ask for retransmission of lost video
	// packets, as browsers do (true).
	NACK bool
	// Relay makes every participant that only subscribes connect
	// relay-only, through the instance's own TURN relay (false), to
	// measure what relayed media costs the instance against direct.
	Relay bool
	// BesideRelay, with RunBeside, gives the instance beside relay-only
	// subscribers and this one direct ones (-beside-relay): what relayed
	// media costs against direct, both measured at the same time.
	BesideRelay bool
	// Dynacast makes the simulcast publisher stop the layers the server
	// says nobody needs, as browsers do (true); false sends all three
	// whatever the server says, to measure what dynacast saves.
	Dynacast bool
	// Cap is the capped receiver's downlink in kbit/s (400), CapFor how
	// long it stays capped before it is lifted (20 s): capped scenario.
	Cap    int
	CapFor time.Duration

	// GOMAXPROCS, when above 0, is the spawned instance's GOMAXPROCS
	// (0: Go's default, the CPUs the instance may use), so one machine
	// measures how the instance scales with cores.
	GOMAXPROCS int

	// Shapes are what the capacity scenario searches, in turn: ShapeFanout,
	// ShapeMeeting5, ShapeMeeting10 (all three).
	Shapes []string
	// CapacityStart is the capacity search's first step and CapacityMax
	// its ceiling, in participants (10 and 1000); CapacityP99 the p99
	// forwarding latency a step must stay under (10 ms), besides losing
	// nothing.
	CapacityStart, CapacityMax int
	CapacityP99                time.Duration

	// Light, from 0 up, makes every receiving participant of a fanout,
	// meeting or capacity run light but Light of them (light.go): its
	// media is read at its socket, not by Pion, which costs the load
	// generator a fraction of a full receiver. The full ones are spread
	// through the join order and give the latency figures, so with 0 the
	// run measures no latency. LightOff (the default): all full.
	Light int
	// CPUs, with Spawn, pins the spawned instance to these CPUs (a
	// taskset -c list, such as "1" or "0,2-3"; empty: not pinned), and
	// the floor relay too, so the two are measured on the same CPUs.
	CPUs string

	// lightNet is the network light participants' sockets come from
	// (nil: the host's).
	lightNet transport.Net

	// spawnEnv is added to a spawned instance's environment (the capped
	// scenario's listeners on its namespace's link).
	spawnEnv []string
}

// Placements of participants over several URLs.
const (
	PlaceRoundRobin = "round-robin" // participant i joins through URLs[i mod len]
	PlaceRandom     = "random"      // each participant through a URL chosen at random
)

// DefaultConfig is a fanout to 50 subscribers against a local instance.
func DefaultConfig() Config {
	return Config{
		Scenario:        "fanout",
		URLs:            []string{"http://127.0.0.1:8080"},
		Placement:       PlaceRoundRobin,
		OpsURLs:         []string{"http://127.0.0.1:9091"},
		Subscribers:     50,
		Participants:    5,
		Cycles:          100,
		Parallel:        4,
		Hold:            time.Second,
		Media:           DefaultMedia(),
		Timing:          Timing{Warmup: 3 * time.Second, Window: 20 * time.Second, Grace: 2 * time.Second},
		Floor:           true,
		FloorBatch:      true,
		JoinConcurrency: 10,
		JoinTimeout:     15 * time.Second,
		Settle:          10 * time.Second,
		MaxLoss:         1,
		NACK:            true,
		Dynacast:        true,
		Cap:             400,
		CapFor:          20 * time.Second,
		Shapes:          []string{ShapeFanout, ShapeMeeting5, ShapeMeeting10},
		CapacityStart:   10,
		CapacityMax:     maxCapacity,
		CapacityP99:     10 * time.Millisecond,
		Light:           LightOff,
	}
}

// SetScenario sets the scenario and the defaults that differ by scenario:
// a capacity step measures 12 s (the search runs ten or so of them) and
// needs no floor.
func (c *Config) SetScenario(name string) {
	c.Scenario = name
	if name == "capacity" {
		c.Timing.Window, c.Floor = 12*time.Second, false
	}
}

// scenarios names each scenario with what it runs.
var scenarios = map[string]string{
	"fanout":    "one publisher (audio+video) to -subscribers receivers in one room",
	"meeting":   "-rooms rooms of -participants participants, every one publishing audio+video",
	"churn":     "-parallel participants at a time join, exchange media, flap their network -flaps times (resume and ICE restart), stay -hold, and leave, -cycles times",
	"floor":     "only the bare UDP relay floor, with the fanout or meeting shape; no server",
	"simulcast": "one publisher of three simulcast video layers (150, 500, 1700 kbit/s) to -subscribers receivers, a third asking for each layer",
	"capped":    "the simulcast publisher with audio to -subscribers receivers of the top layer and one more in a network namespace whose downlink is capped at -cap kbit/s for -cap-for, then lifted (root, -spawn)",
	"capacity":  "the largest -shapes (fanout subscribers, meeting-5 and meeting-10 participants) one instance carries with no loss and p99 under -max-p99: steps from -start doubling, then bisecting, up to -max",
	"dynacast":  "one publisher of three simulcast video layers to -subscribers receivers that all ask for the low one; -dynacast=false: the publisher sends every layer anyway",
}

// Describe says what scenario runs; ok is false for an unknown one.
func Describe(scenario string) (text string, ok bool) {
	text, ok = scenarios[scenario]
	return text, ok
}

// Validate checks every field; its errors name the flag that sets it.
func (c *Config) Validate() error {
	if _, ok := scenarios[c.Scenario]; !ok {
		return fmt.Errorf("unknown scenario %q (want fanout, meeting, churn, floor, simulcast, dynacast, capped or capacity)", c.Scenario)
	}
	if err := c.Media.validate(); err != nil {
		return err
	}
	if err := c.validateTarget(); err != nil {
		return err
	}
	return c.validateShape()
}

func (c *Config) validateTarget() error {
	if c.Spawn == "" {
		if len(c.URLs) == 0 {
			return errors.New("-url or -urls must name at least one instance")
		}
		for _, u := range c.URLs {
			if !isHTTPURL(u) {
				return fmt.Errorf("-url and -urls take http(s) URLs, got %q", u)
			}
		}
		for _, u := range c.OpsURLs {
			if !isHTTPURL(u) {
				return fmt.Errorf("-ops-url and -ops-urls take http(s) URLs, got %q", u)
			}
		}
	}
	if err := c.validateFleet(); err != nil {
		return err
	}
	if err := c.validateCap(); err != nil {
		return err
	}
	if err := c.validateCapacity(); err != nil {
		return err
	}
	if err := c.validateLight(); err != nil {
		return err
	}
	switch {
	case c.GOMAXPROCS < 0:
		return fmt.Errorf("-gomaxprocs must not be negative, got %d", c.GOMAXPROCS)
	case c.GOMAXPROCS > 0 && (c.Spawn == "" || c.SpawnFleet > 0):
		return errors.New("-gomaxprocs sets the GOMAXPROCS of the instance -spawn starts: it needs -spawn, without -spawn-fleet")
	}
	if c.Placement != PlaceRoundRobin && c.Placement != PlaceRandom {
		return fmt.Errorf("-placement must be %s or %s, got %q", PlaceRoundRobin, PlaceRandom, c.Placement)
	}
	if c.APISecret != "" && c.APIKey == "" {
		return errors.New("-api-key is required with -api-secret")
	}
	if needsFloor := c.Scenario == "floor" || (c.Floor && c.Scenario != "churn"); needsFloor && c.RelayExe == "" {
		return errors.New("the floor needs the mediaload binary to start its relay (RelayExe)")
	}
	return nil
}

// validateCap checks the capped scenario's flags.
func (c *Config) validateCap() error {
	switch {
	case c.Scenario != "capped":
		return nil
	case c.Spawn == "" || c.SpawnFleet > 0:
		return errors.New("capped needs -spawn (one instance, listening on the namespace's link)")
	case c.Cap <= 0:
		return fmt.Errorf("-cap must be positive, got %d", c.Cap)
	case c.CapFor < 5*time.Second:
		return fmt.Errorf("-cap-for must be at least 5s (convergence and a measurement), got %s", c.CapFor)
	}
	return nil
}

// maxFleet bounds -spawn-fleet: instances on one machine.
const maxFleet = 16

func (c *Config) validateFleet() error {
	switch {
	case c.SpawnFleet < 0 || c.SpawnFleet > maxFleet:
		return fmt.Errorf("-spawn-fleet must be from 0 to %d, got %d", maxFleet, c.SpawnFleet)
	case c.SpawnFleet > 0 && c.Spawn == "":
		return errors.New("-spawn-fleet needs -spawn to name the media-service binary")
	case c.DrainAfter < 0:
		return fmt.Errorf("-drain-after must not be negative, got %s", c.DrainAfter)
	case c.DrainAfter == 0:
		return nil
	case c.SpawnFleet < 2:
		return errors.New("-drain-after needs -spawn-fleet 2 or more: the drained instance's rooms move to a sibling")
	case c.Scenario != "fanout" && c.Scenario != "meeting":
		return fmt.Errorf("-drain-after works with fanout and meeting, not %s", c.Scenario)
	case c.DrainAfter >= c.Timing.Window:
		return fmt.Errorf("-drain-after %s must fall inside -duration %s (leave a few seconds for the move)", c.DrainAfter, c.Timing.Window)
	}
	return nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func (c *Config) validateShape() error {
	switch {
	case c.Subscribers < 1 || c.Subscribers > 1000:
		return fmt.Errorf("-subscribers must be from 1 to 1000, got %d", c.Subscribers)
	case c.Rooms < 0 || c.Rooms > 100:
		return fmt.Errorf("-rooms must be from 0 to 100, got %d", c.Rooms)
	case c.Scenario == "meeting" && c.Rooms == 0:
		return errors.New("meeting: -rooms must be at least 1")
	case c.Participants < 2 || c.Participants > 100:
		return fmt.Errorf("-participants must be from 2 to 100, got %d", c.Participants)
	case c.Cycles < 1:
		return fmt.Errorf("-cycles must be at least 1, got %d", c.Cycles)
	case c.Flaps < 0 || c.Flaps > 100:
		return fmt.Errorf("-flaps must be from 0 to 100, got %d", c.Flaps)
	case c.Parallel < 1 || c.Parallel > 100:
		return fmt.Errorf("-parallel must be from 1 to 100, got %d", c.Parallel)
	case c.Timing.Window <= 0 || c.Timing.Warmup < 0 || c.Timing.Grace < 0:
		return errors.New("-duration must be positive, -warmup and -grace not negative")
	case c.JoinConcurrency < 1:
		return fmt.Errorf("-join-concurrency must be at least 1, got %d", c.JoinConcurrency)
	case c.JoinTimeout <= 0:
		return fmt.Errorf("-join-timeout must be positive, got %s", c.JoinTimeout)
	case c.MaxLoss < 0:
		return fmt.Errorf("-max-loss must not be negative, got %g", c.MaxLoss)
	}
	return nil
}

// shape is the scenario's topology, which the floor reproduces.
func (c *Config) shape() topology {
	if c.Scenario == "meeting" || (c.Scenario == "floor" && c.Rooms > 0) {
		t := make(topology, c.Rooms)
		for i := range t {
			t[i] = group{publishers: c.Participants}
		}
		return t
	}
	return topology{{publishers: 1, listeners: c.Subscribers}}
}

// floorOptions says how to start the child relay.
func (c *Config) floorOptions() floorOptions {
	return floorOptions{exe: c.RelayExe, batch: c.FloorBatch, stderr: c.ChildStderr, cpus: c.CPUs}
}
