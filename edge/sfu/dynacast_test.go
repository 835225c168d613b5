package sfu

import (
	"slices"
	"testing"
	"time"
)

// TestDynacastNeededLayers: a simulcast publication tells its owner how
// many layers its subscribers need: a rise at once, a fall once it has
// been still for dynacastHold, nothing while nobody changes anything.
func TestDynacastNeededLayers(t *testing.T) {
	h := newHarness(t, Config{PLIInterval: 10 * time.Millisecond})
	pub := h.newSimulcastPublisher(t, vp8)
	video := pub.publication(t)
	told := make(chan int, 16)
	video.OnNeededLayers(func(n int) { told <- n })
	expectNeed(t, told, 0)

	a := h.newSubscriber(t, clientAPI(t, true))
	sa := a.subscribe(t, video)[0]
	expectNeed(t, told, 3) // a new subscription asks for high
	start := time.Now()
	sa.Apply(0, false)
	expectNeed(t, told, 1)
	if took := time.Since(start); took < dynacastHold {
		t.Errorf("fall told after %s; want after the %s hold", took, dynacastHold)
	}
	if got := video.ActiveRIDs(1); !slices.Equal(got, []string{"q"}) {
		t.Errorf("ActiveRIDs(1) = %v; want [q]", got)
	}

	b := h.newSubscriber(t, clientAPI(t, true))
	sb := b.subscribe(t, video)[0]
	expectNeed(t, told, 3)
	if got := video.ActiveRIDs(3); !slices.Equal(got, []string{"q", "h", "f"}) {
		t.Errorf("ActiveRIDs(3) = %v; want [q h f]", got)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	expectNeed(t, told, 1)
	sa.Apply(2, true)
	expectNeed(t, told, 0)
	if got := video.ActiveRIDs(0); len(got) != 0 {
		t.Errorf("ActiveRIDs(0) = %v; want []", got)
	}
	if got := video.MID(); got != pub.mid {
		t.Errorf("MID() = %q; want the publisher's %q", got, pub.mid)
	}
	select {
	case n := <-told:
		t.Errorf("told %d with no change", n)
	case <-time.After(2 * dynacastHold):
	}
}

// TestDynacastPlainTrack: a publication without simulcast never tells.
func TestDynacastPlainTrack(t *testing.T) {
	h := newHarness(t, Config{})
	video, _ := h.newPublisher(t).publications(t)
	told := make(chan int, 4)
	video.OnNeededLayers(func(n int) { told <- n })
	sub := h.newSubscriber(t, clientAPI(t, true))
	sub.subscribe(t, video)[0].Apply(0, false)
	select {
	case n := <-told:
		t.Errorf("plain track told %d; want never", n)
	case <-time.After(2 * dynacastHold):
	}
}

func expectNeed(t *testing.T, told <-chan int, want int) {
	t.Helper()
	select {
	case n := <-told:
		if n != want {
			t.Fatalf("needed layers told %d; want %d", n, want)
		}
	case <-time.After(waitFor):
		t.Fatalf("needed layers not told within %s; want %d", waitFor, want)
	}
}
