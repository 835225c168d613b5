package load

import (
	"errors"
	"fmt"

	"github.com/pion/transport/v5"
)

// LightOff is Config.Light's default: every subscriber is a full Pion
// receiver.
const LightOff = -1

// receiverCounts is how many of a run's receiving participants were
// light (media read at the socket, light.go) and how many full (read by
// Pion; the latency figures are theirs).
type receiverCounts struct {
	Light int `json:"light"`
	Full  int `json:"full"`
	// AtSocket is how many media packets the light ones read at their
	// sockets (the rest of theirs went through Pion until each stream
	// was anchored).
	AtSocket uint64 `json:"read_at_socket"`
}

// countAtSocket sums what the light participants of rooms read at their
// sockets.
func (c *receiverCounts) countAtSocket(rooms []*room) {
	if c == nil {
		return
	}
	for _, r := range rooms {
		for _, p := range r.members {
			if p.light != nil {
				c.AtSocket += p.light.taken.Load()
			}
		}
	}
}

// makeLight makes every receiving participant of rooms light but
// cfg.Light of them, spread through the join order (the first, the
// last, and evenly between; one alone is the middle one), so the full
// ones' latency stands for early and late joins. With -light off it
// changes nothing and reports nil.
func makeLight(cfg Config, t *serverTarget, rooms []*room) (*receiverCounts, error) {
	if cfg.Light == LightOff {
		return nil, nil
	}
	recv := receivers(rooms)
	full := spread(len(recv), cfg.Light)
	counts := &receiverCounts{Full: len(full)}
	for i, p := range recv {
		if full[i] {
			continue
		}
		if err := p.makeLight(t, cfg.NACK, cfg.lightNet); err != nil {
			return nil, err
		}
		counts.Light++
	}
	return counts, nil
}

// makeLight gives p a light receiver and the API whose sockets feed it.
func (p *participant) makeLight(t *serverTarget, nack bool, base transport.Net) error {
	p.light = newLightSub(p.sink.clk, p.sink)
	p.sink.light = true
	n, err := newLightNet(base, p.light)
	if err != nil {
		return err
	}
	if p.api, err = newLightAPI(t.loopback, nack, t.clientDiag, n); err != nil {
		return fmt.Errorf("light subscriber %s: %w", p.identity, err)
	}
	return nil
}

// receivers are the participants that receive media, in join order (each
// room's first publisher, then everyone else, as joinAll joins them).
func receivers(rooms []*room) []*participant {
	var firsts, rest []*participant
	for _, r := range rooms {
		pubs := 0
		for _, p := range r.members {
			if p.publish {
				pubs++
			}
		}
		for i, p := range r.members {
			if p.publish && pubs < 2 {
				continue // the room's only publisher: nothing comes to it
			}
			if i == 0 {
				firsts = append(firsts, p)
			} else {
				rest = append(rest, p)
			}
		}
	}
	return append(firsts, rest...)
}

// spread picks n of m positions, the first and the last among them, as
// evenly apart as they go (one: the middle); n >= m picks all.
func spread(m, n int) map[int]bool {
	picked := make(map[int]bool, n)
	switch {
	case n >= m:
		for i := range m {
			picked[i] = true
		}
	case n == 1:
		picked[m/2] = true
	case n > 1:
		for i := range n {
			picked[i*(m-1)/(n-1)] = true
		}
	}
	return picked
}

// validateLight checks -light and -cpus.
func (c *Config) validateLight() error {
	if c.CPUs != "" && (c.Spawn == "" || c.SpawnFleet > 0) {
		return errors.New("-cpus pins the instance -spawn starts: it needs -spawn, without -spawn-fleet")
	}
	if c.Light == LightOff {
		return nil
	}
	switch {
	case c.Light < 0:
		return fmt.Errorf("-light must be from 0 up (full receivers), or %d (off), got %d", LightOff, c.Light)
	case c.Scenario != "fanout" && c.Scenario != "meeting" && c.Scenario != "capacity":
		return fmt.Errorf("-light is for fanout, meeting and capacity, not %s", c.Scenario)
	case c.DrainAfter > 0:
		return errors.New("-light is not for -drain-after: a light receiver does not follow a move")
	case c.Scenario == "capacity" && c.Light == 0:
		return errors.New("-light 0 measures no latency, which capacity judges every step by: keep at least 1 full receiver")
	}
	return nil
}
