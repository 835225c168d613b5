package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// The capacity scenario: for each shape (a fan-out, meetings of 5, of 10)
// it finds the largest load one instance carries with no loss and a p99
// forwarding latency under -max-p99, by running steps of growing size
// (each one a fanout or meeting run of its own, with the measured window
// after every join) until one fails: doubling from -start, then bisecting
// between the last step that held and the first that did not. With -spawn
// every step starts a fresh instance (-gomaxprocs sets its GOMAXPROCS), so
// no step inherits another's state; with -url every step runs against the
// same instance, its rooms named apart.

// Capacity shapes (Config.Shapes).
const (
	ShapeFanout    = "fanout"     // one publisher to N subscribers; the unit is a subscriber
	ShapeMeeting5  = "meeting-5"  // rooms of 5, everyone publishing; the unit is a room
	ShapeMeeting10 = "meeting-10" // rooms of 10
)

// capacityShapes are the shapes by name: how many participants a room
// of the shape holds (0: the fan-out, one room whatever its size).
var capacityShapes = map[string]int{ShapeFanout: 0, ShapeMeeting5: 5, ShapeMeeting10: 10}

// capacityResolution ends the bisection: once the first failing step is
// within this share of the last one that held (or one unit of them), the
// figure is known to within it. A 16th keeps a search to about ten steps
// from 10 to 1000 participants.
const capacityResolution = 16

// capacityProbe runs a step of n units (subscribers, or rooms) and
// reports whether the instance held it. Its error ends the search: it
// is for an interrupted run, not for a step that failed.
type capacityProbe func(ctx context.Context, n int) (held bool, err error)

// searchCapacity finds the largest n from 1 to limit that probe holds,
// taking holding to be monotone: it doubles n from start while the steps
// hold, then bisects between the last that held and the first that did
// not, until they are within capacityResolution. good is the largest that
// held (0: none did), bad the smallest that did not (0: every step held,
// up to limit: the capacity is at least limit).
func searchCapacity(ctx context.Context, start, limit int, probe capacityProbe) (good, bad int, err error) {
	for n := max(1, min(start, limit)); ; n = min(2*n, limit) {
		held, err := probe(ctx, n)
		if err != nil {
			return good, bad, err
		}
		if !held {
			bad = n
			break
		}
		good = n
		if n >= limit {
			return good, 0, nil
		}
	}
	for bad-good > max(1, bad/capacityResolution) {
		n := good + (bad-good)/2
		held, err := probe(ctx, n)
		if err != nil {
			return good, bad, err
		}
		if held {
			good = n
		} else {
			bad = n
		}
	}
	return good, bad, nil
}

// capacityReport is one shape's search: every step in the order run, and
// the capacity it found.
type capacityReport struct {
	Shape string `json:"shape"`
	// GOMAXPROCS is the spawned instance's (-gomaxprocs); 0 when the
	// instance chose its own (Go's default: the CPUs it may use).
	GOMAXPROCS int `json:"gomaxprocs"`
	// Unit is what Capacity counts: subscribers (fanout) or participants
	// (meetings).
	Unit string `json:"unit"`
	// Capacity is the largest step that held, in Unit (0: none did);
	// FirstFailed the smallest that did not (0: none up to -max, so the
	// capacity is at least Capacity: AtCeiling).
	Capacity    int  `json:"capacity"`
	FirstFailed int  `json:"first_failed,omitempty"`
	AtCeiling   bool `json:"at_ceiling"`
	// ForwardedPerSec is what the instance forwarded at Capacity.
	ForwardedPerSec float64        `json:"forwarded_per_second"`
	Steps           []capacityStep `json:"steps"`
}

// capacityStep is one step of a search.
type capacityStep struct {
	Participants    int     `json:"participants"` // sessions of the step, publishers included
	Rooms           int     `json:"rooms"`
	Joined          int     `json:"joined"`
	ExpectedPerSec  float64 `json:"expected_forwarded_per_second"`
	ForwardedPerSec float64 `json:"forwarded_per_second"`
	// CPUCores is the instance's CPU time in the window over its length:
	// cores kept busy.
	CPUCores        float64 `json:"cpu_cores"`
	CPUMicrosPerPkt float64 `json:"cpu_us_per_packet"`
	LossPercent     float64 `json:"loss_percent"`
	LatencyP99      float64 `json:"latency_p99_ms"`
	RSSMiB          float64 `json:"rss_mib"`
	Goroutines      float64 `json:"goroutines"`
	// LoadGenCores is the load generator's own CPU over the step's
	// length: near the machine's cores, it and not the instance may be
	// what broke.
	LoadGenCores float64 `json:"loadgen_cpu_cores"`
	// SkippedSends are packets the load generator's senders could not
	// send in time (never counted as loss): above 0, the load generator
	// fell behind, and what broke may be the machine, not the instance.
	SkippedSends uint64 `json:"skipped_sends,omitempty"`
	// Receivers counts the step's light and full receivers (-light).
	Receivers *receiverCounts `json:"receivers,omitempty"`
	Held      bool            `json:"held"`
	Failures  []string        `json:"failures,omitempty"`
}

// runCapacity searches each of cfg.Shapes in turn.
func runCapacity(ctx context.Context, cfg Config, rep *Report, pr *progress) error {
	for _, shape := range cfg.Shapes {
		cr, err := searchShape(ctx, cfg, shape, pr)
		rep.Capacity = append(rep.Capacity, *cr)
		if err != nil {
			return err
		}
		if cr.Capacity == 0 {
			rep.fail("capacity %s: no step held, not even the smallest", shape)
		}
	}
	return nil
}

// searchShape runs the search of one shape.
func searchShape(ctx context.Context, cfg Config, shape string, pr *progress) (*capacityReport, error) {
	size := capacityShapes[shape]
	cr := &capacityReport{Shape: shape, GOMAXPROCS: cfg.GOMAXPROCS, Unit: "subscribers"}
	start, limit, per := cfg.CapacityStart, cfg.CapacityMax, 1
	if size > 0 {
		cr.Unit, per = "participants", size
		start, limit = (start+size-1)/size, limit/size
	}
	probe := func(ctx context.Context, n int) (bool, error) {
		st, err := capacityStepRun(ctx, stepConfig(cfg, shape, n), pr)
		if err != nil {
			return false, err
		}
		cr.Steps = append(cr.Steps, st)
		verdict := "held"
		if !st.Held {
			verdict = "FAILED: " + strings.Join(st.Failures, "; ")
		}
		pr.printf("capacity %s: %d %s: %s", shape, n*per, cr.Unit, verdict)
		return st.Held, nil
	}
	good, bad, err := searchCapacity(ctx, start, limit, probe)
	at := stepConfig(cfg, shape, good)
	cr.settle(good*per, bad*per, at.shape().participants())
	return cr, err
}

// settle records what the search found, in the shape's unit: the largest
// step that held (good), the smallest that did not (bad), and what the
// instance forwarded at good, the step of that many participants.
func (c *capacityReport) settle(good, bad, participants int) {
	c.Capacity, c.FirstFailed, c.AtCeiling = good, bad, good > 0 && bad == 0
	for _, st := range c.Steps {
		if st.Held && st.Participants == participants {
			c.ForwardedPerSec = st.ForwardedPerSec
		}
	}
}

// stepConfig is the run of one step: n subscribers of one publisher, or
// n rooms of the shape's size, with no floor (the fanout scenario
// measures the cost per packet against it) and no loss allowed.
func stepConfig(cfg Config, shape string, n int) Config {
	cfg.Floor, cfg.MaxLoss = false, 0
	if size := capacityShapes[shape]; size > 0 {
		cfg.Scenario, cfg.Rooms, cfg.Participants = "meeting", n, size
	} else {
		cfg.Scenario, cfg.Subscribers = "fanout", n
	}
	return cfg
}

// capacityStepRun runs one step against its own target (a fresh instance
// with -spawn) and judges it. A step that could not be carried out (the
// instance unreachable, gone, too slow to answer its metrics) did not
// hold; only an interrupted run is an error.
func capacityStepRun(ctx context.Context, cfg Config, pr *progress) (capacityStep, error) {
	rep := newReport(cfg)
	cpu0, _ := selfCPU()
	began := time.Now()
	err := stepRun(ctx, cfg, rep, pr)
	if ctx.Err() != nil {
		return capacityStep{}, ctx.Err()
	}
	if err != nil {
		rep.fail("%v", err)
	}
	st := judgeStep(rep, cfg.CapacityP99)
	if cpu1, err := selfCPU(); err == nil {
		st.LoadGenCores = (cpu1 - cpu0).Seconds() / time.Since(began).Seconds()
	}
	return st, nil
}

// stepRun is runForwarding without the floor.
func stepRun(ctx context.Context, cfg Config, rep *Report, pr *progress) error {
	t, err := openTarget(ctx, cfg, cfg.shape().participants(), pr)
	if err != nil {
		return err
	}
	defer t.close()
	return finishServer(t, rep, measureServer(ctx, cfg, t, rep, pr))
}

// judgeStep turns a step's report into its row: it held when the run
// passed (every join, no loss, nothing from the server but media) with
// its p99 under maxP99.
func judgeStep(rep *Report, maxP99 time.Duration) capacityStep {
	st := capacityStep{Participants: rep.Shape.Participants, Rooms: rep.Shape.Rooms, ExpectedPerSec: rep.Shape.ExpectedPerSec}
	if j := rep.Joins; j != nil {
		st.Joined = j.Joined
	}
	st.Receivers = rep.Receivers
	s := rep.Server
	if s == nil {
		rep.fail("nothing was measured")
	} else {
		st.ForwardedPerSec, st.CPUMicrosPerPkt = s.PacketsPerSec, s.CPUMicrosPerPkt
		st.LossPercent, st.LatencyP99, st.SkippedSends = s.LossPercent, s.LatencyP99, s.SkippedSends
		if s.WindowSeconds > 0 {
			st.CPUCores = s.CPUSeconds / s.WindowSeconds
		}
		if limit := ms(maxP99); s.LatencyP99 >= limit {
			rep.fail("p99 %.2f ms, not under %g ms", s.LatencyP99, limit)
		}
	}
	if r := rep.Resources; r != nil {
		st.RSSMiB, st.Goroutines = r.Loaded.RSS/mib, r.Loaded.Goroutines
	}
	st.Failures, st.Held = rep.Failures, len(rep.Failures) == 0
	return st
}

func (r *Report) capacityTable(w io.Writer) {
	for _, c := range r.Capacity {
		procs := "the instance's own"
		if c.GOMAXPROCS > 0 {
			procs = strconv.Itoa(c.GOMAXPROCS)
		}
		fmt.Fprintf(w, "\ncapacity %s\tGOMAXPROCS %s: %s\n", c.Shape, procs, c.verdict())
		fmt.Fprintln(w, "participants\trooms\tjoined\tforwarded/s\tinstance CPU\tCPU/packet\tloss\tp99\tRSS\tgoroutines\tload generator CPU\tresult")
		for _, s := range c.Steps {
			result := "held"
			if !s.Held {
				result = "failed: " + strings.Join(s.Failures, "; ")
			}
			if c := s.Receivers; c != nil {
				result += fmt.Sprintf(" (%d light, %d full receivers)", c.Light, c.Full)
			}
			if s.SkippedSends > 0 {
				result += fmt.Sprintf(" (the load generator skipped %d sends)", s.SkippedSends)
			}
			fmt.Fprintf(w, "%d\t%d\t%d\t%.0f\t%.2f cores\t%.2f µs\t%.3f %%\t%.2f ms\t%.1f MiB\t%.0f\t%.2f cores\t%s\n",
				s.Participants, s.Rooms, s.Joined, s.ForwardedPerSec, s.CPUCores, s.CPUMicrosPerPkt,
				s.LossPercent, s.LatencyP99, s.RSSMiB, s.Goroutines, s.LoadGenCores, result)
		}
	}
}

// verdict says what the search found, in a line.
func (c capacityReport) verdict() string {
	switch {
	case c.Capacity == 0:
		return fmt.Sprintf("no step held (the smallest failed at %d %s)", c.FirstFailed, c.Unit)
	case c.AtCeiling:
		return fmt.Sprintf("at least %d %s (-max reached; %.0f forwarded/s)", c.Capacity, c.Unit, c.ForwardedPerSec)
	}
	return fmt.Sprintf("%d %s (%.0f forwarded/s); %d failed", c.Capacity, c.Unit, c.ForwardedPerSec, c.FirstFailed)
}

// validateCapacity checks the capacity scenario's flags.
func (c *Config) validateCapacity() error {
	if c.Scenario != "capacity" {
		return nil
	}
	switch {
	case len(c.Shapes) == 0:
		return errors.New("-shapes must name at least one of fanout, meeting-5, meeting-10")
	case c.CapacityMax < 1 || c.CapacityMax > maxCapacity:
		return fmt.Errorf("-max must be from 1 to %d, got %d", maxCapacity, c.CapacityMax)
	case c.CapacityStart < 1 || c.CapacityStart > c.CapacityMax:
		return fmt.Errorf("-start must be from 1 to -max (%d), got %d", c.CapacityMax, c.CapacityStart)
	case c.CapacityP99 <= 0:
		return fmt.Errorf("-max-p99 must be positive, got %s", c.CapacityP99)
	case c.SpawnFleet > 0:
		return errors.New("capacity measures one instance: -spawn, or -url, not -spawn-fleet")
	}
	for _, s := range c.Shapes {
		size, ok := capacityShapes[s]
		switch {
		case !ok:
			return fmt.Errorf("-shapes: unknown shape %q (want fanout, meeting-5 or meeting-10)", s)
		case size > c.CapacityMax:
			return fmt.Errorf("-shapes: %s needs -max of at least %d (one room), got %d", s, size, c.CapacityMax)
		}
	}
	return nil
}

// maxCapacity bounds -max, in participants: the most subscribers of a
// fanout run (-subscribers), and a hundred rooms of ten.
const maxCapacity = 1000
