package main

import (
	"runtime"
	"sync"
	"time"

	"github.com/media-service/media-service/edge/fleet"
)

// cpuShare turns the process's CPU time into the share of the machine's
// CPUs it used since the previous sample, 0 to 1: what the fleet's
// placement weighs beside the session and room bounds. Only cmd reads
// the process's own usage; edge hands it the rest of the load.
type cpuShare struct {
	mu   sync.Mutex // guards the last sample
	wall time.Time
	cpu  time.Duration
}

// sample returns the share used since the last call (0 on the first, or
// where the platform cannot say).
func (c *cpuShare) sample() float64 {
	used, ok := processCPU()
	if !ok {
		return 0
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	prevWall, prevCPU := c.wall, c.cpu
	c.wall, c.cpu = now, used
	elapsed := now.Sub(prevWall)
	if prevWall.IsZero() || elapsed <= 0 {
		return 0
	}
	share := float64(used-prevCPU) / (float64(elapsed) * float64(runtime.GOMAXPROCS(0)))
	return min(max(share, 0), 1)
}

// loadedFleet is the directory edge routes joins with: the Fleet, with
// the process's CPU share and its measured capacity added to every load
// edge publishes.
type loadedFleet struct {
	*fleet.Fleet
	cpu      cpuShare
	capacity int // sessions at the measured capacity for GOMAXPROCS; 0 unmeasured
}

// SetLoad publishes l with the CPU share since the last publication and
// the capacity.
func (f *loadedFleet) SetLoad(l fleet.Load) {
	l.CPU, l.Capacity = f.cpu.sample(), f.capacity
	f.Fleet.SetLoad(l)
}
