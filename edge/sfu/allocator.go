package sfu

import (
	"slices"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// PausedCongestion is the reason a subscription is paused when the
// subscriber's downlink cannot carry even its lowest layer.
const PausedCongestion = "congestion"

// SubscriptionState is what the allocation did to one subscription, as
// told to the subscriber: paused for a reason ("" when not paused by the
// server) and the highest layer allowed (-1 when paused).
type SubscriptionState struct {
	Subscription *Subscription
	Paused       string
	Layer        int
}

// Allocation tuning.
const (
	// upgradeHold is the least time from a subscription's layer change
	// to a change upward, doubled (up to holdMax) each time a raise is
	// undone within twice that: a steady link sees at most two changes
	// in 10 s, never a flapping layer.
	upgradeHold = 5 * time.Second
	// raiseStep is the least time between two raises in a row: a link
	// found by probes in steps (1.5×, 3×, 4×) raises a capped
	// subscription a layer a step, and waiting upgradeHold before the
	// second left it 5 s on the middle layer. A raise after a fall still
	// waits the whole hold.
	raiseStep = time.Second
	// upgradeMargin: an upgrade must fit in this share of the budget, a
	// layer already held keeps it up to the whole budget.
	upgradeMargin = 0.9
	// allocateEvery bounds how often the allocation runs (it runs on
	// feedback, about every 100 ms).
	allocateEvery = 250 * time.Millisecond
	// pauseAfter: a video subscription is paused only once its lowest
	// layer has not fitted for this long. A cut's depth after a sudden
	// cap, or a probe's backlog, leaves the estimate under the lowest
	// layer for a moment; the estimate climbs back within a second or
	// two, and a paused track costs its viewer a keyframe and seconds of
	// frozen video, which the lowest layer's overshoot for that moment
	// does not. 2.5 s spans the first probe after a cut
	// (probeAfterDecrease, then probeDuration): at 1.5 s a 400 kbit/s
	// link's video paused on a loaded host half a second before the probe
	// that would have kept it.
	pauseAfter = 2500 * time.Millisecond
)

// allocation is the state of one subscription in its connection's
// allocation.
type allocation struct {
	layer   int           // allocated layer; -1 paused by congestion
	changed time.Duration // when layer last changed
	raised  time.Duration // when it was last raised
	hold    time.Duration // the least time from a change to a raise
	short   time.Duration // since when its lowest layer has not fitted; -1 while it fits
	up      bool          // its last change was a raise
}

// holdMax bounds how long a subscription whose raises keep failing waits
// before the next try.
const holdMax = 40 * time.Second

// mayRaise reports whether a may be raised at now: hold has passed since
// its last change, or raiseStep since a raise. A paused subscription
// waits upgradeHold at most: the doubled holds keep a layer from
// flapping, but a frozen tile on a link that came back (measured: 20 s
// paused under a 2.4 Mbit/s estimate) is worse than a flap.
func (a *allocation) mayRaise(now time.Duration) bool {
	switch {
	case a.up:
		return now-a.changed >= min(a.hold, raiseStep)
	case a.layer < 0:
		return now-a.changed >= min(a.hold, upgradeHold)
	}
	return now-a.changed >= a.hold
}

// bandwidth is a subscriber connection's congestion control: it reads the
// transport-wide feedback (on the SRTCP goroutine, through the
// connection's rtcpRouter), keeps the estimate, shares it out among the
// connection's subscriptions and probes for more. It starts no goroutine.
//
// Allocation. Until the first sign of congestion (overuse or loss) the
// connection is unconstrained and every subscription gets what it asks
// for: a subscriber on a good link never waits for a probe. Once
// congested, audio is kept whole, then video subscriptions in priority
// order (videoPriority: screen share before camera) get their lowest
// layer, or are paused with PausedCongestion when even that does not
// fit; what is left raises them in the same order toward what they ask
// for. When the estimate covers everything asked for again, the
// connection is unconstrained once more.
//
// mu guards everything below it: subscriptions come and go on signaling
// goroutines while the feedback goroutine allocates.
type bandwidth struct {
	twcc    *twccSender
	metrics *metrics
	pace    *pacer // safe for concurrent use; its rate is set on feedback

	mu        sync.Mutex
	est       *estimator
	subs      map[*Subscription]*allocation
	congested bool
	lastRun   time.Duration
	results   []packetResult // reused across feedback
	probe     prober
	onState   func(SubscriptionState)
}

func newBandwidth(m *metrics) *bandwidth {
	t := newTWCCSender()
	return &bandwidth{twcc: t, metrics: m, est: newEstimator(), subs: map[*Subscription]*allocation{},
		probe: newProber(t), pace: newPacer(t.now, func(q *pacedPacket) { q.sub.writeHeld(q) })}
}

// add takes a subscription into the allocation.
func (b *bandwidth) add(s *Subscription) {
	b.mu.Lock()
	b.subs[s] = &allocation{layer: maxLayers - 1, hold: upgradeHold, raised: -time.Hour, short: -1}
	b.mu.Unlock()
}

// remove takes it out.
func (b *bandwidth) remove(s *Subscription) {
	b.mu.Lock()
	if a := b.subs[s]; a != nil && a.layer < 0 {
		b.metrics.pausedTracks.Add(bgCtx, -1, congestionReason)
	}
	delete(b.subs, s)
	b.mu.Unlock()
}

// setOnState sets the function told of every change the allocation makes.
func (b *bandwidth) setOnState(f func(SubscriptionState)) {
	b.mu.Lock()
	b.onState = f
	b.mu.Unlock()
}

// Estimate is the current estimate in bit/s, 0 before one is known.
func (b *bandwidth) Estimate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.est.estimate
}

// onRTCP reads a compound RTCP packet that holds transport-wide feedback.
func (b *bandwidth) onRTCP(pkt []byte) {
	pkts, err := rtcp.Unmarshal(pkt)
	if err != nil {
		return
	}
	for _, p := range pkts {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			b.onFeedback(fb)
		}
	}
}

// onFeedback updates the estimate with one feedback message, allocates
// and probes.
func (b *bandwidth) onFeedback(fb *rtcp.TransportLayerCC) {
	now := b.twcc.now()
	b.mu.Lock()
	b.results = b.twcc.results(fb, b.results[:0])
	before, outages := b.est.estimate, b.est.outages
	b.est.update(now, b.results)
	var refresh []*Subscription
	if b.est.outages != outages {
		refresh = b.videoSubs()
	}
	// A decrease is the sign of congestion, whether or not it lowered
	// the estimate: the first one comes on the feedback that makes the
	// first estimate (nothing before it to be lower than), and the later
	// ones find the estimate already under backoff × throughput. Marked
	// only when the estimate fell, a subscriber capped from its first
	// second was never congested and got every layer at 4× its link.
	decreased := b.est.lastDecrease == now
	if decreased {
		b.congested = true
	}
	if rate, ok := b.probe.feedback(now, b.results, b.est); ok {
		b.est.probed(rate)
	}
	b.metrics.estimate.Record(bgCtx, int64(b.est.estimate))
	var changes []SubscriptionState
	if now-b.lastRun >= allocateEvery || decreased || b.est.estimate < before {
		b.lastRun = now
		changes = b.allocate(now)
	}
	b.probe.plan(now, b.est, b.wanted(), b.carriers())
	pace := b.paceRate()
	notify := b.onState
	b.mu.Unlock()
	b.pace.setRate(pace)
	b.probe.send(now)
	// The subscriber's network came back after an outage: its decoders
	// lost the frames meanwhile and would wait seconds before asking for
	// a keyframe themselves.
	for _, s := range refresh {
		s.requestKeyframe()
	}
	if notify != nil {
		for _, c := range changes {
			notify(c)
		}
	}
}

// videoSubs lists the connection's video subscriptions. b.mu is held.
func (b *bandwidth) videoSubs() []*Subscription {
	var out []*Subscription
	for s := range b.subs {
		if s.pub.kind == webrtc.RTPCodecTypeVideo {
			out = append(out, s)
		}
	}
	return out
}

// close stops the probes and the pacer.
func (b *bandwidth) close() {
	b.probe.pacer.stop()
	b.pace.close()
}

// paceRate is the rate the pacer lets video out at, in bit/s: paceFactor
// times the estimate on a congested connection, or a running probe's
// target if higher; 0 (no pacing) on one that is not congested. b.mu is
// held.
func (b *bandwidth) paceRate() float64 {
	if !b.congested {
		return 0
	}
	rate := paceFactor * b.est.estimate
	if b.probe.active {
		rate = max(rate, b.probe.target)
	}
	return rate
}

// videoPriority orders video subscriptions for the allocation: lower
// first. A screen share goes before a camera: what a presenter shows is
// what the room is looking at.
func videoPriority(s *Subscription) int {
	if s.pub.Source() == SourceScreenShare {
		return 0
	}
	return 1
}

// layerRate is a publication's measured bitrate on layer i.
func layerRate(p *Publication, i int) float64 {
	if l := p.layer(i); l != nil {
		return float64(l.bps.Load())
	}
	return 0
}

// wanted is the bitrate of everything the subscriptions ask for. b.mu
// is held.
func (b *bandwidth) wanted() float64 {
	total := 0.0
	for s := range b.subs {
		if s.paused.Load() {
			continue
		}
		total += layerRate(s.pub, s.wantedLayer())
	}
	return total
}

// wantedLayer is the highest layer s asks for that its publication sends.
func (s *Subscription) wantedLayer() int {
	for i := int(s.requested.Load()); i > 0; i-- {
		if s.pub.sending(i) {
			return i
		}
	}
	return 0
}

// lowestLayer is the lowest layer its publication sends.
func (s *Subscription) lowestLayer() int {
	for i := range maxLayers {
		if s.pub.sending(i) {
			return i
		}
	}
	return 0
}

// allocate shares the estimate out and applies it; it returns the
// changes to tell. b.mu is held.
func (b *bandwidth) allocate(now time.Duration) []SubscriptionState {
	budget := b.est.estimate
	if !b.congested || budget == 0 || budget >= b.wanted()/upgradeMargin {
		changes, all := b.grantAll(now)
		b.congested = !all
		return changes
	}
	video := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		if s.pub.kind == webrtc.RTPCodecTypeVideo {
			video = append(video, s)
		} else if !s.paused.Load() {
			budget -= layerRate(s.pub, 0)
		}
	}
	slices.SortStableFunc(video, func(x, y *Subscription) int { return videoPriority(x) - videoPriority(y) })
	grant := make([]int, len(video))
	for i, s := range video {
		grant[i] = -1
		if s.paused.Load() {
			grant[i] = b.subs[s].layer // the subscriber's own pause: leave as is
			continue
		}
		if r, ok := b.resumable(s, budget, now); ok {
			grant[i], budget = s.lowestLayer(), max(budget-r, 0)
		}
	}
	for i, s := range video {
		if grant[i] < 0 || s.paused.Load() {
			continue
		}
		grant[i], budget = b.raise(s, grant[i], budget, now)
	}
	var changes []SubscriptionState
	for i, s := range video {
		if c, ok := b.apply(s, grant[i], now); ok {
			changes = append(changes, c)
		}
	}
	return changes
}

// resumable reports whether s keeps (or gets back) its lowest layer,
// and that layer's rate: a subscription the allocation paused resumes
// only as an upgrade does, after upgradeHold and within upgradeMargin;
// one not paused keeps its lowest layer until that has not fitted the
// budget for pauseAfter.
func (b *bandwidth) resumable(s *Subscription, budget float64, now time.Duration) (float64, bool) {
	r := layerRate(s.pub, s.lowestLayer())
	a := b.subs[s]
	if a.layer < 0 {
		return r, a.mayRaise(now) && r <= budget*upgradeMargin
	}
	if r <= budget {
		a.short = -1
		return r, true
	}
	if a.short < 0 {
		a.short = now
	}
	return r, now-a.short < pauseAfter
}

// raise lifts s from layer g toward what it asks for while the budget
// allows: up to its allocated layer with the whole budget, above it only
// with upgradeMargin and after upgradeHold since its last change.
func (b *bandwidth) raise(s *Subscription, g int, budget float64, now time.Duration) (int, float64) {
	a := b.subs[s]
	for next := g + 1; next <= s.wantedLayer(); next++ {
		if !s.pub.sending(next) {
			continue
		}
		extra := layerRate(s.pub, next) - layerRate(s.pub, g)
		limit := budget
		if next > a.layer {
			if !a.mayRaise(now) {
				break
			}
			limit *= upgradeMargin
		}
		if extra > limit {
			break
		}
		g, budget = next, budget-extra
	}
	return g, budget
}

// grantAll lifts every cap, but not within upgradeHold of a
// subscription's last change; it reports whether every cap is lifted.
// b.mu is held.
func (b *bandwidth) grantAll(now time.Duration) ([]SubscriptionState, bool) {
	var changes []SubscriptionState
	all := true
	for s, a := range b.subs {
		a.short = -1
		if a.layer != maxLayers-1 && !a.mayRaise(now) {
			all = false
			continue
		}
		if c, ok := b.apply(s, maxLayers-1, now); ok {
			changes = append(changes, c)
		}
	}
	return changes, all
}

// apply sets s's allocated layer to g, counting and reporting a change.
// b.mu is held.
func (b *bandwidth) apply(s *Subscription, g int, now time.Duration) (SubscriptionState, bool) {
	a := b.subs[s]
	if a == nil || a.layer == g {
		return SubscriptionState{}, false
	}
	if g < a.layer {
		b.metrics.downgrades.Add(bgCtx, 1, congestionReason)
		// A raise undone within 10 s did not fit: wait twice as long
		// before the next; one that held resets the wait.
		if now-a.raised < 2*upgradeHold {
			a.hold = min(2*a.hold, holdMax)
		} else {
			a.hold = upgradeHold
		}
	} else {
		a.raised = now
	}
	if a.layer < 0 {
		b.metrics.pausedTracks.Add(bgCtx, -1, congestionReason)
	} else if g < 0 {
		b.metrics.pausedTracks.Add(bgCtx, 1, congestionReason)
	}
	if g < 0 {
		a.short = -1 // counted afresh once resumed
	}
	a.layer, a.changed, a.up = g, now, g > a.layer
	s.SetAllocatedLayer(g)
	st := SubscriptionState{Subscription: s, Layer: g}
	if g < 0 {
		st.Paused = PausedCongestion
	}
	return st, true
}

// carriers are the video subscriptions padding can be sent on: started
// ones. b.mu is held.
func (b *bandwidth) carriers() []*Subscription {
	var out []*Subscription
	for s := range b.subs {
		if s.pub.kind == webrtc.RTPCodecTypeVideo && s.bound.Load() != nil {
			out = append(out, s)
		}
	}
	return out
}
