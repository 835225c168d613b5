package sfu

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestAllocation: on a congested connection the estimate caps a simulcast
// video subscription's layer, pauses it (reason congestion) when not even
// its lowest layer has fitted for pauseAfter (a shorter shortfall keeps
// the lowest layer), and lifts the caps again only after upgradeHold,
// twice that after a raise that did not hold (a paused track waits
// upgradeHold at most); audio is never touched.
func TestAllocation(t *testing.T) {
	video := layeredPublication(t, 0, maxLayers)
	for i, bps := range []int64{150e3, 500e3, 1850e3} {
		video.layer(i).bps.Store(bps)
	}
	audio := &Publication{kind: webrtc.RTPCodecTypeAudio, engine: video.engine,
		codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000}}}
	al := newLayer(audio, 0, nil)
	al.bps.Store(50e3)
	audio.layers[0].Store(al)

	b := newBandwidth(video.engine.metrics)
	vs, as := newSubscription(video, nil), newSubscription(audio, nil)
	b.add(vs)
	b.add(as)
	b.congested = true
	steps := []struct {
		at       time.Duration
		estimate float64
		layer    int    // vs's allocated layer after
		paused   string // the state told, when it changed
	}{
		{at: 1 * time.Second, estimate: 3e6, layer: 2},
		{at: 2 * time.Second, estimate: 400e3, layer: 0},
		// Short of the lowest layer for less than pauseAfter: kept.
		{at: 3 * time.Second, estimate: 150e3, layer: 0},
		{at: 4 * time.Second, estimate: 400e3, layer: 0},
		{at: 5 * time.Second, estimate: 150e3, layer: 0},
		{at: 5*time.Second + pauseAfter - time.Millisecond, estimate: 150e3, layer: 0},
		{at: 5*time.Second + pauseAfter, estimate: 150e3, layer: -1, paused: PausedCongestion},
		{at: 9 * time.Second, estimate: 3e6, layer: -1},   // within upgradeHold of the pause
		{at: 13 * time.Second, estimate: 3e6, layer: 2},   // after it
		{at: 14 * time.Second, estimate: 600e3, layer: 1}, // down at once
		// The raise at 13 s was undone within 10 s: the next waits 10 s.
		{at: 20 * time.Second, estimate: 3e6, layer: 1},
		{at: 24 * time.Second, estimate: 3e6, layer: 2},
		// Undone again at once, then paused: the hold has doubled twice,
		// but a paused track waits upgradeHold at most.
		{at: 25 * time.Second, estimate: 100e3, layer: 0},
		{at: 25*time.Second + pauseAfter, estimate: 100e3, layer: -1, paused: PausedCongestion},
		{at: 25*time.Second + pauseAfter + upgradeHold - time.Millisecond, estimate: 3e6, layer: -1},
		{at: 25*time.Second + pauseAfter + upgradeHold, estimate: 3e6, layer: 2},
	}
	for _, st := range steps {
		b.est.estimate = st.estimate
		if st.estimate < 3e6 {
			b.congested = true
		}
		changes := b.allocate(st.at)
		if got := b.subs[vs].layer; got != st.layer {
			t.Fatalf("at %s with %.0f bit/s: video layer %d; want %d", st.at, st.estimate, got, st.layer)
		}
		if got := int(vs.allocated.Load()); got != st.layer {
			t.Errorf("at %s: SetAllocatedLayer(%d); want %d", st.at, got, st.layer)
		}
		if b.subs[as].layer != maxLayers-1 || as.allocated.Load() != maxLayers-1 {
			t.Errorf("at %s with %.0f bit/s: audio allocated %d; want untouched", st.at, st.estimate, as.allocated.Load())
		}
		for _, c := range changes {
			if c.Subscription != vs {
				t.Errorf("at %s: change told for audio: %+v", st.at, c)
			} else if c.Paused != st.paused || c.Layer != st.layer {
				t.Errorf("at %s: told paused %q layer %d; want %q %d", st.at, c.Paused, c.Layer, st.paused, st.layer)
			}
		}
	}
}

// TestAllocationScreenShareFirst: when the estimate carries only one
// video's lowest layer, a screen share keeps its layer and the camera is
// paused (once that has lasted pauseAfter), whichever was subscribed
// first.
func TestAllocationScreenShareFirst(t *testing.T) {
	camera := layeredPublication(t, 0, maxLayers)
	screen := layeredPublication(t, 0, maxLayers)
	screen.SetSource(SourceScreenShare)
	for _, p := range []*Publication{camera, screen} {
		for i, bps := range []int64{150e3, 500e3, 1850e3} {
			p.layer(i).bps.Store(bps)
		}
	}
	b := newBandwidth(camera.engine.metrics)
	cs, ss := newSubscription(camera, nil), newSubscription(screen, nil)
	b.add(cs)
	b.add(ss)
	b.congested = true
	b.est.estimate = 200e3
	b.allocate(time.Second)
	b.allocate(time.Second + pauseAfter)
	if got := b.subs[ss].layer; got != 0 {
		t.Errorf("screen share allocated layer %d; want 0 (its lowest)", got)
	}
	if got := b.subs[cs].layer; got != -1 {
		t.Errorf("camera allocated layer %d; want -1 (paused: the screen share comes first)", got)
	}
}
