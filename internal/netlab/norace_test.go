//go:build !race

package netlab

// raceEnabled: the tests run under the race detector.
const raceEnabled = false
