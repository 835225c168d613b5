package main

import (
	"context"
	"io"
	"time"
)

// runScenario runs the configured scenario and builds its report. An
// error means the run could not be carried out at all (bad setup, the
// server unreachable before anything was measured); a run that was carried
// out but missed its pass conditions returns a report with failures.
func runScenario(ctx context.Context, cfg config, stderr io.Writer) (*Report, error) {
	pr := &progress{}
	if !cfg.quiet {
		pr.w = stderr
	}
	rep := newReport(cfg)
	cpu0, _ := selfCPU()
	var err error
	switch cfg.scenario {
	case "floor":
		err = runFloorOnly(ctx, cfg, rep, pr)
	case "churn":
		err = runChurn(ctx, cfg, rep, pr)
	default:
		err = runForwarding(ctx, cfg, rep, pr)
	}
	if err != nil {
		return nil, err
	}
	cpu1, _ := selfCPU()
	rep.LoadGenCPUSeconds = (cpu1 - cpu0).Seconds()
	rep.Machine.LoadEnd = loadAvg()
	rep.OK = len(rep.Failures) == 0
	return rep, nil
}

func newReport(cfg config) *Report {
	t := cfg.shape()
	if cfg.scenario == "churn" { // the anchor and -parallel churners, all publishing
		t = topology{{publishers: cfg.parallel + 1}}
	}
	pubs := 0
	for _, g := range t {
		pubs += g.publishers
	}
	mc := cfg.media
	return &Report{
		Scenario: cfg.scenario,
		Started:  time.Now().UTC(),
		Machine:  newMachine(),
		Shape: shapeReport{
			Participants:   t.participants(),
			Publishers:     pubs,
			Rooms:          len(t),
			VideoPPS:       mc.VideoPPS(),
			VideoKbps:      mc.VideoKbps,
			VideoPacket:    mc.VideoPacket,
			AudioPPS:       mc.AudioPPS,
			AudioPacket:    mc.AudioPacket,
			WindowSeconds:  cfg.timing.window.Seconds(),
			ExpectedPerSec: expectedRate(t, mc),
		},
	}
}

// expectedRate is how many packets per second the shape should deliver:
// every publisher's packets to every other member of its room.
func expectedRate(t topology, mc mediaConfig) float64 {
	per := mc.VideoPPS() + float64(mc.AudioPPS)
	var r float64
	for _, g := range t {
		r += float64(g.publishers) * float64(g.publishers+g.listeners-1) * per
	}
	return r
}

// runFloorOnly measures only the bare relay with the scenario's shape.
func runFloorOnly(ctx context.Context, cfg config, rep *Report, pr *progress) error {
	return measureFloor(ctx, cfg.floorOpts, cfg, rep, pr)
}

func measureFloor(ctx context.Context, fo floorOptions, cfg config, rep *Report, pr *progress) error {
	pr.printf("floor: bare UDP relay, %d participants", cfg.shape().participants())
	res, err := runFloor(ctx, fo, cfg.shape(), cfg.media, cfg.timing, pr)
	if err != nil {
		return err
	}
	rep.Floor = newPhaseReport(res)
	checkLoss(rep, "floor", rep.Floor, cfg.maxLoss)
	return nil
}

// checkLoss fails the run when a phase lost more than maxLoss percent, or
// delivered nothing at all.
func checkLoss(rep *Report, phase string, p *phaseReport, maxLoss float64) {
	switch {
	case p.Expected == 0:
		rep.fail("%s: no packets expected in the window (nothing was sent)", phase)
	case p.LossPercent > maxLoss:
		rep.fail("%s: loss %.3f%% (%d of %d) above -max-loss %g%%", phase, p.LossPercent, p.Lost, p.Expected, maxLoss)
	}
}
