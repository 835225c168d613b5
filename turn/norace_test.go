//go:build !race

package turn

// raceEnabled: the tests run under the race detector, whose
// instrumentation allocates where the code itself does not.
const raceEnabled = false
