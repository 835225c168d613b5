package sfu

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// layerRates are the measured bitrates the allocation tests give a
// simulcast publication's layers: a browser's 720p camera.
var layerRates = [maxLayers]int64{150e3, 500e3, 1850e3}

// rateLayers sets p's layers' measured bitrates to layerRates.
func rateLayers(p *Publication) {
	for i, bps := range layerRates {
		p.layer(i).bps.Store(bps)
	}
}

// ratedPublications are a simulcast video publication at layerRates and
// a 50 kbit/s Opus one on the same engine.
func ratedPublications(t *testing.T) (video, audio *Publication) {
	t.Helper()
	video = layeredPublication(t, 0, maxLayers)
	rateLayers(video)
	audio = &Publication{kind: webrtc.RTPCodecTypeAudio, engine: video.engine,
		codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000}}}
	l := newLayer(audio, 0, nil)
	l.bps.Store(50e3)
	audio.layers[0].Store(l)
	return video, audio
}

// TestAllocation: on a congested connection the estimate caps a simulcast
// video subscription's layer, pauses it (reason congestion) when not even
// its lowest layer has fitted for pauseAfter (a shorter shortfall keeps
// the lowest layer), and lifts the caps again only after upgradeHold,
// twice that after a raise that did not hold (a paused track waits
// upgradeHold at most); audio is never touched.
func TestAllocation(t *testing.T) {
	video, audio := ratedPublications(t)
	b := newBandwidth(video.engine.metrics, nil)
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
	rateLayers(camera)
	rateLayers(screen)
	b := newBandwidth(camera.engine.metrics, nil)
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

// allocatedSender is a subscriber connection's congestion control driven
// over a simulated link by runLink: its packets are stamped on the
// connection's transport-wide sequence, its feedback goes through
// bandwidth.onFeedback, and it sends at what the allocation lets out
// (the target layers' rates), as a subscriber connection does.
type allocatedSender struct {
	ourController // stamps on b.twcc; its estimator is not used
	b             *bandwidth
	video, audio  *Subscription
	after         []allocationAfter // one per feedback
}

// allocationAfter is what one feedback left: when it came, when the
// allocation had last run before it, whether it decreased the estimate,
// the estimate, and whether the connection was congested and the video
// subscription's target layer after it.
type allocationAfter struct {
	at, lastRun time.Duration
	decreased   bool
	estimate    float64
	congested   bool
	video       int
}

func (c *allocatedSender) feedback(pkts []rtcp.Packet) {
	c.b.mu.Lock()
	lastRun := c.b.lastRun
	c.b.mu.Unlock()
	at := c.b.twcc.now()
	for _, p := range pkts {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			c.b.onFeedback(marshalTWCC(fb))
		}
	}
	c.b.mu.Lock()
	c.after = append(c.after, allocationAfter{at: at, lastRun: lastRun, decreased: c.b.est.lastDecrease == at,
		estimate: c.b.est.estimate, congested: c.b.congested, video: c.video.TargetLayer()})
	c.b.mu.Unlock()
}

// estimate is the rate the connection sends at: its target layers'.
func (c *allocatedSender) estimate() float64 {
	return layerRate(c.video.pub, c.video.TargetLayer()) + layerRate(c.audio.pub, 0)
}

// TestCongestedFromTheFirstEstimate guards the fix of 3d75c72: a
// subscriber whose downlink is capped from its first second (400 kbit/s
// under a 1.85 Mbit/s top layer) loses most of its packets from its very
// first feedback, so the estimator's first decrease comes on the
// feedback that makes its first estimate, when there is no estimate
// before it to be lower than. Marked congested only when the estimate
// fell, that connection stayed unconstrained and was granted the top
// layer at 4× its link for as long as the cap lasted. The decrease must
// mark it congested and allocate at once: from the first estimate on,
// its video is below the top layer (and its audio untouched).
//
// The link's 120 ms one-way delay puts the feedback that makes the
// first estimate (the first that spans rateWindow of arrivals) 100 ms
// after an allocation run by the clock (allocateEvery), so only the
// decrease's own allocation can move the layer on it: the test checks
// that the decrease allocates at once, not only that the next periodic
// run would. Time is synctest's fake clock, which the connection reads
// through time.Since.
func TestCongestedFromTheFirstEstimate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		video, audio := ratedPublications(t)
		b := newBandwidth(video.engine.metrics, nil)
		defer b.close()
		c := &allocatedSender{ourController: ourController{t: b.twcc}, b: b,
			video: newSubscription(video, nil), audio: newSubscription(audio, nil)}
		b.add(c.video)
		b.add(c.audio)
		const capacity = 400e3
		l := newLink(capacity, 0)
		l.delay, l.maxQueue = 120*time.Millisecond, 50*time.Millisecond
		top := layerRate(video, maxLayers-1) + layerRate(audio, 0)
		runLink(c, l, 2*time.Second, top, func(time.Duration) float64 { return capacity })

		first := slices.IndexFunc(c.after, func(a allocationAfter) bool { return a.estimate > 0 })
		if first < 0 {
			t.Fatalf("no estimate after %d feedbacks over 2 s", len(c.after))
		}
		// The scenario's own premises: without them the test would pass
		// on the bug.
		f := c.after[first]
		t.Logf("first estimate %.0f bit/s at %s, %s after the last allocation", f.estimate, f.at, f.at-f.lastRun)
		if !f.decreased {
			t.Fatalf("the first estimate (%.0f bit/s at %s) came without a decrease; want the decrease on it, as on a link capped from the start", f.estimate, f.at)
		}
		if f.at-f.lastRun >= allocateEvery {
			t.Fatalf("the first estimate came %s after the last allocation; want under %s, where only the decrease allocates", f.at-f.lastRun, allocateEvery)
		}
		for _, a := range c.after[first:] {
			if !a.congested || a.video >= maxLayers-1 {
				t.Fatalf("at %s, estimate %.0f bit/s on a %.0f bit/s link: congested %v, video target layer %d; want congested and below the top layer %d",
					a.at, a.estimate, capacity, a.congested, a.video, maxLayers-1)
			}
		}
		if got := c.audio.TargetLayer(); got != 0 {
			t.Errorf("audio target layer = %d; want 0 (never touched)", got)
		}
	})
}

// camerasSender is allocatedSender with two cameras: what the connection
// sends is both cameras' target layers and the audio, and each feedback
// records both cameras' allocated layers.
type camerasSender struct {
	ourController
	b      *bandwidth
	cams   [2]*Subscription
	audio  *Subscription
	after  []camerasAfter
	states []SubscriptionState
}

// camerasAfter is what one feedback left: when, the estimate, and each
// camera's allocated layer (-1 paused).
type camerasAfter struct {
	at       time.Duration
	estimate float64
	layers   [2]int
}

func (c *camerasSender) feedback(pkts []rtcp.Packet) {
	at := c.b.twcc.now()
	for _, p := range pkts {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			c.b.onFeedback(marshalTWCC(fb))
		}
	}
	c.b.mu.Lock()
	c.after = append(c.after, camerasAfter{at: at, estimate: c.b.est.estimate,
		layers: [2]int{c.b.subs[c.cams[0]].layer, c.b.subs[c.cams[1]].layer}})
	c.b.mu.Unlock()
}

func (c *camerasSender) estimate() float64 {
	total := layerRate(c.audio.pub, 0)
	for _, s := range c.cams {
		if l := s.TargetLayer(); l >= 0 {
			total += layerRate(s.pub, l)
		}
	}
	return total
}

// TestTwoCamerasBehindALinkThatCarriesOne: two cameras (150 kbit/s
// lowest layers) and a microphone behind a 300 kbit/s link, which
// carries one camera's lowest layer and the audio but not both cameras'.
// The allocation must settle with one camera on its lowest layer and the
// other paused, and stay so: neither both playing into a link that
// carries one (the loss and the cuts that follow), nor both paused, nor
// a paused camera resumed in turn with the other. This is the cycle a
// Chromium page capped at 300 kbit/s saw (both cameras paused and
// resumed together, every camera dark half the time): the cameras, of
// equal priority, were ordered by map iteration, so the one short of
// budget changed from run to run and neither was short for pauseAfter in
// a row until the estimate fell under one camera. Time is synctest's
// fake clock.
func TestTwoCamerasBehindALinkThatCarriesOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam1, audio := ratedPublications(t)
		cam2 := layeredPublication(t, 0, maxLayers)
		rateLayers(cam2)
		b := newBandwidth(cam1.engine.metrics, nil)
		defer b.close()
		c := &camerasSender{ourController: ourController{t: b.twcc}, b: b,
			cams: [2]*Subscription{newSubscription(cam1, nil), newSubscription(cam2, nil)}, audio: newSubscription(audio, nil)}
		b.setOnState(func(s SubscriptionState) { c.states = append(c.states, s) })
		for _, s := range []*Subscription{c.cams[0], c.audio, c.cams[1]} {
			b.add(s)
		}
		const capacity = 300e3
		l := newLink(capacity, 0)
		l.delay, l.maxQueue = 40*time.Millisecond, 50*time.Millisecond
		top := 2*layerRate(cam1, maxLayers-1) + layerRate(audio, 0)
		const run, settle = 60 * time.Second, 15 * time.Second
		runLink(c, l, run, top, func(time.Duration) float64 { return capacity })

		for _, s := range c.states {
			t.Logf("state: camera %d layer %d %q", slices.Index(c.cams[:], s.Subscription)+1, s.Layer, s.Paused)
		}
		var steady []camerasAfter
		for _, a := range c.after {
			if a.at >= settle {
				steady = append(steady, a)
			}
		}
		if len(steady) == 0 {
			t.Fatalf("no feedback after %s of %s", settle, run)
		}
		first := steady[0]
		for _, a := range steady {
			playing := 0
			for _, l := range a.layers {
				if l >= 0 {
					playing++
				}
			}
			if playing != 1 || a.layers != first.layers {
				t.Fatalf("at %s (estimate %.0f bit/s on a %.0f bit/s link): camera layers %v, at %s %v; want one camera playing and the other paused, the same from %s on",
					a.at, a.estimate, capacity, a.layers, first.at, first.layers, settle)
			}
		}
		if got := c.audio.TargetLayer(); got != 0 {
			t.Errorf("audio target layer = %d; want 0 (never touched)", got)
		}
	})
}

// TestAllocationPausesAndResumesOneAtATime: two cameras of equal
// priority on a congested connection. When the estimate carries one
// camera's lowest layer and not both, only one is paused (the one
// subscribed last), the other keeps playing; a resume the link does not
// carry is undone by pausing the camera just resumed, not the one that
// kept playing, and its next try waits its doubled hold while the other
// plays. When both are paused (an estimate under one camera), they are
// paused pauseAfter apart, and resume one per upgradeHold even when the
// estimate carries both.
func TestAllocationPausesAndResumesOneAtATime(t *testing.T) {
	cam1, audio := ratedPublications(t)
	cam2 := layeredPublication(t, 0, maxLayers)
	rateLayers(cam2)
	b := newBandwidth(cam1.engine.metrics, nil)
	c1, c2, as := newSubscription(cam1, nil), newSubscription(cam2, nil), newSubscription(audio, nil)
	b.add(c1)
	b.add(as)
	b.add(c2)
	b.congested = true
	const s = time.Second
	p := pauseAfter
	steps := []struct {
		at       time.Duration
		estimate float64
		layers   [2]int // c1's and c2's allocated layers after
	}{
		{at: 1 * s, estimate: 400e3, layers: [2]int{0, 0}},
		// Carries one camera (150 kbit/s) and the audio (50), not two.
		{at: 2 * s, estimate: 300e3, layers: [2]int{0, 0}},
		{at: 2*s + p - time.Millisecond, estimate: 300e3, layers: [2]int{0, 0}},
		{at: 2*s + p, estimate: 300e3, layers: [2]int{0, -1}},
		{at: 2*s + p + upgradeHold - time.Millisecond, estimate: 450e3, layers: [2]int{0, -1}},
		// A probe's estimate: c2 resumes, and the link does not carry it.
		{at: 2*s + p + upgradeHold, estimate: 450e3, layers: [2]int{0, 0}},
		{at: 3*s + p + upgradeHold, estimate: 300e3, layers: [2]int{0, 0}},
		{at: 3*s + 2*p + upgradeHold, estimate: 300e3, layers: [2]int{0, -1}},
		// Its resume undone within 2×upgradeHold: it waits twice as long
		// while c1 plays.
		{at: 3*s + 2*p + 2*upgradeHold, estimate: 450e3, layers: [2]int{0, -1}},
		{at: 3*s + 2*p + 3*upgradeHold - time.Millisecond, estimate: 450e3, layers: [2]int{0, -1}},
		{at: 3*s + 2*p + 3*upgradeHold, estimate: 450e3, layers: [2]int{0, 0}},
		// Under one camera, with c2's last resume held (over 2×upgradeHold
		// ago): c2 is paused first, c1 gets a fresh look.
		{at: 40 * s, estimate: 150e3, layers: [2]int{0, 0}},
		{at: 40*s + p, estimate: 150e3, layers: [2]int{0, -1}},
		{at: 40*s + 2*p - time.Millisecond, estimate: 150e3, layers: [2]int{0, -1}},
		{at: 40*s + 2*p, estimate: 150e3, layers: [2]int{-1, -1}},
		// Both may resume by their holds and the estimate carries both:
		// one does, the other upgradeHold later.
		{at: 40*s + 2*p + upgradeHold, estimate: 450e3, layers: [2]int{0, -1}},
		{at: 40*s + 2*p + 2*upgradeHold - time.Millisecond, estimate: 450e3, layers: [2]int{0, -1}},
		{at: 40*s + 2*p + 2*upgradeHold, estimate: 450e3, layers: [2]int{0, 0}},
	}
	for _, st := range steps {
		b.est.estimate = st.estimate
		b.allocate(st.at)
		if got := [2]int{b.subs[c1].layer, b.subs[c2].layer}; got != st.layers {
			t.Fatalf("at %s with %.0f bit/s: camera layers %v; want %v", st.at, st.estimate, got, st.layers)
		}
		if got := b.subs[as].layer; got != maxLayers-1 {
			t.Fatalf("at %s: audio allocated %d; want untouched", st.at, got)
		}
	}
}
