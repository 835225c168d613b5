package main

import (
	"os"
	"runtime/debug"
	"strconv"
)

// defaultGCPercent is the collector's target unless GOGC is set: a
// collection starts when the heap has grown by half of what was live after
// the last one, where Go's default waits until it has doubled. The
// instance's heap is small (the NACK histories are outside it) and its
// allocation rate low, about 2.5 MB/s with ten participants publishing
// 3.5 Mbit/s each, so collecting twice as often costs nothing measurable
// per forwarded packet and saves about 0.3 MiB of resident memory per
// participant (docs/performance.md). Memory per participant is what sizes
// an instance.
const defaultGCPercent = 50

// tuneGC sets the collector's target to defaultGCPercent unless the
// operator chose one with GOGC, and says which is in force: the value and
// "default" or "GOGC". An empty GOGC is unset, as it is to the runtime.
func tuneGC() (percent, from string) {
	if v := os.Getenv("GOGC"); v != "" {
		return v, "GOGC"
	}
	debug.SetGCPercent(defaultGCPercent)
	return strconv.Itoa(defaultGCPercent), "default"
}
