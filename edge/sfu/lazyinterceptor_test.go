package sfu

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// nackLoop is the function of the goroutine Pion's NACK generator starts
// for each connection it is bound to.
const nackLoop = "interceptor/pkg/nack.(*GeneratorInterceptor).loop"

// goroutinesIn counts the goroutines whose stack has fn in it.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// awaitGoroutinesIn waits until want goroutines run fn.
func awaitGoroutinesIn(t *testing.T, fn string, want int, when string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := goroutinesIn(fn)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines in %s; want %d", when, got, fn, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNACKGeneratorWaitsForAStream: a publisher connection that receives
// no stream (a viewer's) runs no NACK generator goroutine, ticking ten
// times a second for nothing; one that receives a stream runs it, and
// it still asks for lost packets (TestNACKsToPublisherBounded).
func TestNACKGeneratorWaitsForAStream(t *testing.T) {
	h := newHarness(t, Config{})
	base := goroutinesIn(nackLoop)
	newServerPC(t, h.engine.NewPublisherPeerConnection) // a viewer's; Pion's go statements run as it is made
	awaitGoroutinesIn(t, nackLoop, base, "a publisher connection with no stream")

	pub := h.newPublisher(t)
	pub.publications(t)
	pub.feed(t, 5*time.Millisecond, false)
	// The publisher's own client connection runs Pion's default set, the
	// generator included, from the start.
	awaitGoroutinesIn(t, nackLoop, base+2, "a publisher connection receiving")
}
