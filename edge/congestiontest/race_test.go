//go:build race

package congestiontest

// raceEnabled: the tests run under the race detector.
const raceEnabled = true
