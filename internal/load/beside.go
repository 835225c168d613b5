package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
)

// BesideReport is a run of two builds side by side: the same scenario
// against two spawned instances at the same time, each with its own load
// (RunBeside).
type BesideReport struct {
	ThisBinary   string `json:"this_binary"`
	BesideBinary string `json:"beside_binary"`
	// BesideRelay: the beside instance's subscribers were relay-only,
	// this one's direct (Config.BesideRelay).
	BesideRelay bool    `json:"beside_relay,omitempty"`
	This        *Report `json:"this"`
	Beside      *Report `json:"beside"`
	// CPURatio is the beside build's CPU per forwarded packet ÷ this
	// build's (0 when either forwarded nothing).
	CPURatio float64 `json:"beside_cpu_ratio"`
	OK       bool    `json:"ok"`
}

// RunBeside runs cfg against its spawned instance and, at the same time,
// the same scenario against an instance of the binary other, spawned
// with the same options (the same -cpus, so both share the CPUs given).
// Whatever the machine does during the run it does to both, which
// alternating runs cannot promise: on a shared or virtual machine the
// CPU time per packet moves by a third from one run to the next, more
// than most changes a comparison is for. The load generators share this
// process, so LoadGenCPUSeconds is the pair's; there is no floor. With
// cfg.BesideRelay the instance beside has relay-only subscribers: other
// may then be the same binary, for relayed media's cost against direct.
func RunBeside(ctx context.Context, cfg Config, other string, progressOut io.Writer) (*BesideReport, error) {
	if err := CheckBeside(cfg, other); err != nil {
		return nil, err
	}
	cfg.Floor = false
	b := cfg
	b.Spawn = other
	b.Relay = cfg.BesideRelay
	var (
		wg   sync.WaitGroup
		reps [2]*Report
		errs [2]error
	)
	for i, c := range []Config{cfg, b} {
		out := progressOut
		if i == 1 {
			out = nil // one progress line is enough: they run in step
		}
		wg.Go(func() { reps[i], errs[i] = Run(ctx, c, out) })
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return nil, err
	}
	r := &BesideReport{ThisBinary: cfg.Spawn, BesideBinary: other, BesideRelay: cfg.BesideRelay, This: reps[0], Beside: reps[1], OK: reps[0].OK && reps[1].OK}
	if a, b := reps[0].Server, reps[1].Server; a != nil && b != nil && a.CPUMicrosPerPkt > 0 && b.CPUMicrosPerPkt > 0 {
		r.CPURatio = b.CPUMicrosPerPkt / a.CPUMicrosPerPkt
	}
	return r, nil
}

// CheckBeside says what is wrong with running cfg beside the binary
// other, or nil.
func CheckBeside(cfg Config, other string) error {
	switch {
	case other == "":
		return errors.New("-beside: no binary given")
	case cfg.Spawn == "" || cfg.SpawnFleet > 0:
		return errors.New("-beside needs -spawn and one instance (no -spawn-fleet)")
	case cfg.Scenario != "fanout" && cfg.Scenario != "meeting":
		return fmt.Errorf("-beside compares forwarding: fanout and meeting only, not %s", cfg.Scenario)
	case cfg.BesideRelay && cfg.Relay:
		return errors.New("-beside-relay compares relay-only subscribers beside with direct ones here: not with -relay")
	}
	return nil
}

// Write writes both reports and the ratio, as tables or as JSON.
func (r *BesideReport) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	for _, part := range []struct {
		title string
		rep   *Report
	}{{"this build: " + r.ThisBinary, r.This}, {"beside it: " + r.BesideBinary + relayOnly(r.BesideRelay), r.Beside}} {
		if _, err := fmt.Fprintf(w, "== %s\n", part.title); err != nil {
			return err
		}
		if err := part.rep.Write(w, false); err != nil {
			return err
		}
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "beside ÷ this, CPU per forwarded packet\t%.3f\n", r.CPURatio)
	return tw.Flush()
}

// relayOnly is the beside title's note of relay-only subscribers.
func relayOnly(relay bool) string {
	if relay {
		return " (relay-only subscribers)"
	}
	return ""
}
