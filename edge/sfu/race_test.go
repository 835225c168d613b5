//go:build race

package sfu

// raceEnabled: the tests run under the race detector.
const raceEnabled = true
