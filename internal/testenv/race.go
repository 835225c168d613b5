//go:build race

package testenv

// RaceEnabled: the tests run under the race detector, which slows the
// code it instruments several times over and makes sync.Pool drop Puts
// on purpose: a test that times a real link or counts allocations skips.
const RaceEnabled = true
