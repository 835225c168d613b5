// Package load is media-service's load generator (cmd/mediaload is its
// command line): synthetic participants built on Pion that speak the
// signaling protocol against one or more running instances, send paced
// audio and video whose payloads carry a send time and sequence number,
// and measure joins, loss, forwarding latency and the server's CPU, memory
// and goroutines (from its ops /metrics). In the same run it measures the
// floor, a bare UDP relay doing the same fan-out with the same batched
// sends as the server, and reports the server's CPU per forwarded packet
// as a multiple of it.
package load

import (
	"context"
	"io"
	"time"
)

// Run runs the configured scenario and builds its report, writing a
// progress line a second to progressOut (nil: none). An error means the run
// could not be carried out at all (a bad Config, the server unreachable
// before anything was measured); a run that was carried out but missed its
// pass conditions returns a report with failures and OK false.
func Run(ctx context.Context, cfg Config, progressOut io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pr := &progress{w: progressOut}
	rep := newReport(cfg)
	cpu0, _ := selfCPU()
	var err error
	switch cfg.Scenario {
	case "floor":
		err = measureFloor(ctx, cfg, rep, pr)
	case "churn":
		err = runChurn(ctx, cfg, rep, pr)
	case "simulcast", "dynacast":
		err = runSimulcast(ctx, cfg, rep, pr)
	case "capped":
		err = runCapped(ctx, cfg, rep, pr)
	case "capacity":
		err = runCapacity(ctx, cfg, rep, pr)
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

func newReport(cfg Config) *Report {
	t := cfg.shape()
	switch cfg.Scenario {
	case "churn": // the anchor and -parallel churners, all publishing
		t = topology{{publishers: cfg.Parallel + 1}}
	case "capacity": // each step has its own shape
		t = nil
	}
	pubs := 0
	for _, g := range t {
		pubs += g.publishers
	}
	mc := cfg.Media
	return &Report{
		Scenario: cfg.Scenario,
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
			WindowSeconds:  cfg.Timing.Window.Seconds(),
			ExpectedPerSec: expectedRate(t, mc),
		},
	}
}

// expectedRate is how many packets per second the shape should deliver:
// every publisher's packets to every other member of its room.
func expectedRate(t topology, mc MediaConfig) float64 {
	per := mc.VideoPPS() + float64(mc.AudioPPS)
	var r float64
	for _, g := range t {
		r += float64(g.publishers) * float64(g.publishers+g.listeners-1) * per
	}
	return r
}

// measureFloor measures the bare relay with the scenario's shape.
func measureFloor(ctx context.Context, cfg Config, rep *Report, pr *progress) error {
	pr.printf("floor: bare UDP relay, %d participants", cfg.shape().participants())
	res, err := runFloor(ctx, cfg.floorOptions(), cfg.shape(), cfg.Media, cfg.Timing, pr)
	if err != nil {
		return err
	}
	reportFloor(rep, cfg, res)
	return nil
}

// reportFloor puts the floor's window into the report, checked against
// -max-loss.
func reportFloor(rep *Report, cfg Config, res *phaseResult) {
	rep.Floor = newPhaseReport(res)
	rep.FloorSends = cfg.floorOptions().sends()
	checkLoss(rep, "floor", rep.Floor, cfg.MaxLoss)
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
