package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// phaseResult is what one measured phase (the floor, or the server)
// produced inside its window.
type phaseResult struct {
	window     time.Duration
	media      mediaTotals
	cpu        time.Duration // the forwarding process's CPU time in the window
	cpuKnown   bool
	sendErrors uint64
	skipped    uint64 // packets the load generator could not send in time
}

// cpuPerPacket is the forwarder's CPU per delivered packet.
func (r *phaseResult) cpuPerPacket() time.Duration {
	if !r.cpuKnown || r.media.got == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.media.got)
}

// floorOptions says how to start the child relay.
type floorOptions struct {
	exe   string   // the mediaload binary (os.Executable)
	env   []string // extra environment for the child
	batch bool     // -floor-batch: the relay sends with sendmmsg
}

func defaultFloorOptions() (floorOptions, error) {
	exe, err := os.Executable()
	if err != nil {
		return floorOptions{}, fmt.Errorf("floor: find own executable: %w", err)
	}
	return floorOptions{exe: exe}, nil
}

// runFloor measures the bare relay with topology t: every member a UDP
// socket registered in its group, publishers sending the same paced media
// as the real run.
func runFloor(ctx context.Context, fo floorOptions, t topology, mc mediaConfig, tm timing, pr *progress) (*phaseResult, error) {
	proc, err := startRelayProc(ctx, fo.exe, fo.env, fo.batch)
	if err != nil {
		return nil, err
	}
	defer proc.close()
	m := newMediaRun(ctx, newClock(), mc)
	members, err := buildFloor(ctx, m, proc, t)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer closeMembers(members)
	if err != nil {
		return nil, err
	}
	for _, fm := range members {
		wg.Go(func() { fm.receive(m.clk) })
	}
	m.eachSender(m.start)
	var u0, u1 relayUsage
	res := &phaseResult{cpuKnown: true}
	res.window, err = m.measure(ctx, tm, windowHooks{
		open:     func() (err error) { pr.reset(m); u0, err = proc.usage(); return err },
		close:    func() (err error) { u1, err = proc.usage(); return err },
		progress: func(el time.Duration) { pr.media("floor", el, m) },
	})
	if err != nil {
		return nil, err
	}
	res.media = m.totals()
	res.cpu = u1.cpu - u0.cpu
	res.sendErrors, res.skipped = m.sendErrors(), m.skipped()
	return res, nil
}

// buildFloor registers every member and creates the publishers' senders
// (not started) and each member's expectations.
func buildFloor(ctx context.Context, m *mediaRun, proc *relayProc, t topology) ([]*floorMember, error) {
	var all []*floorMember
	for gi, g := range t {
		var group []*floorMember
		var pubs [][]*source
		for i := range g.publishers + g.listeners {
			conn, err := joinFloor(ctx, proc.addr, uint32(gi))
			if err != nil {
				return all, err
			}
			fm := &floorMember{conn: conn, sink: m.addSink(), relay: proc.addr}
			all, group = append(all, fm), append(group, fm)
			var srcs []*source
			if i < g.publishers {
				for _, k := range []mediaKind{kindAudio, kindVideo} {
					if m.cfg.pps(k) > 0 {
						srcs = append(srcs, m.newSender(k, fm.writer(m.cfg.size(k))).src)
					}
				}
			}
			pubs = append(pubs, srcs)
		}
		expectOthers(group, pubs)
	}
	return all, nil
}

// expectOthers makes every member expect every source of the group's
// other members.
func expectOthers(group []*floorMember, srcs [][]*source) {
	for i, fm := range group {
		for j, ss := range srcs {
			if i == j {
				continue
			}
			for _, s := range ss {
				fm.sink.expect(s)
			}
		}
	}
}

func closeMembers(ms []*floorMember) {
	for _, fm := range ms {
		fm.conn.Close()
	}
}
