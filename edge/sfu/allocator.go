package sfu

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
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
	seq     uint64        // the order it was added in, among its connection's
	since   time.Duration // when it last started playing: added or resumed
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
	log     *slog.Logger
	pace    *pacer // safe for concurrent use; its rate is set on feedback
	// resent counts the bytes retransmitted on the connection since the
	// last trace (its retransmitters add, trace takes).
	resent atomic.Int64
	repair *repairBudget // safe for concurrent use; its rate is set on feedback

	mu        sync.Mutex
	est       *estimator
	subs      map[*Subscription]*allocation
	congested bool
	lastRun   time.Duration
	results   []packetResult // reused across feedback
	probe     prober
	onState   func(SubscriptionState)
	added     uint64        // subscriptions added so far
	resumed   time.Duration // when the allocation last resumed a paused one
	traced    time.Duration // when trace last logged
	cuts      int           // the estimator's decreases then
}

// newBandwidth makes a connection's congestion control, logging its
// trace to log (nil: nowhere).
func newBandwidth(m *metrics, log *slog.Logger) *bandwidth {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := newTWCCSender()
	return &bandwidth{twcc: t, metrics: m, log: log, est: newEstimator(), subs: map[*Subscription]*allocation{}, resumed: -time.Hour,
		probe: newProber(t), pace: newPacer(t.now, func(q *pacedPacket) { q.sub.writeHeld(q) }), repair: newRepairBudget(t.now)}
}

// add takes a subscription into the allocation.
func (b *bandwidth) add(s *Subscription) {
	b.mu.Lock()
	b.added++
	b.subs[s] = &allocation{layer: maxLayers - 1, hold: upgradeHold, raised: -time.Hour, short: -1, seq: b.added, since: b.twcc.now()}
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

// onRTCP reads the transport-wide feedback (RTPFB, format 15) of a
// compound RTCP packet; the rest is not the bandwidth's.
func (b *bandwidth) onRTCP(pkt []byte) {
	eachRTCP(pkt, func(typ rtcp.PacketType, format uint8, sub []byte) bool {
		if typ == rtcp.TypeTransportSpecificFeedback && format == rtcp.FormatTCC {
			b.onFeedback(sub)
		}
		return true
	})
}

// onFeedback updates the estimate with one feedback message (its bytes),
// allocates and probes.
func (b *bandwidth) onFeedback(fb []byte) {
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
	b.trace(now, changes)
	pace, repair := b.paceRate(), b.repairRate()
	notify := b.onState
	b.mu.Unlock()
	b.pace.setRate(pace)
	b.repair.setRate(repair)
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

// traceEvery bounds how often trace logs a connection that changed no
// allocation: once a second, about ten feedbacks.
const traceEvery = time.Second

// trace logs at debug level what the congestion control saw and did:
// the estimate, the rate the subscriber acknowledged, the last loss
// decision (and the packets it counted, and those reported lost, then
// received, so far), the rate retransmitted since the last line, the
// decreases since the last line and the last one's cause,
// whether a probe runs, and each video subscription's allocated layer.
// It logs on every allocation change and otherwise at most every
// traceEvery, so a pause or resume can be read against the estimate
// that made it. b.mu is held.
func (b *bandwidth) trace(now time.Duration, changes []SubscriptionState) {
	if (len(changes) == 0 && now-b.traced < traceEvery) || !b.log.Enabled(bgCtx, slog.LevelDebug) {
		return
	}
	resent := float64(b.resent.Swap(0)*8) / max(now-b.traced, time.Millisecond).Seconds()
	b.traced = now
	video := b.videoSubs()
	slices.SortFunc(video, b.order)
	layers := make([]slog.Attr, 0, len(video))
	for _, s := range video {
		layers = append(layers, slog.Int(s.pub.id, b.subs[s].layer))
	}
	e := b.est
	b.log.LogAttrs(bgCtx, slog.LevelDebug, "bandwidth_allocation",
		slog.Int64("estimate", int64(e.estimate)), slog.Int64("acked", int64(e.acked)),
		slog.Float64("loss", e.loss), slog.Int("loss_of", e.lossOf), slog.Int("late", e.late),
		slog.Int64("resent", int64(resent)), slog.Int("cuts", e.cuts-b.cuts), slog.String("cause", e.cause),
		slog.Bool("overuse", e.overusing()), slog.Bool("congested", b.congested),
		slog.Int64("probe", int64(b.probeTarget())), slog.Int("changes", len(changes)),
		slog.Any("layers", slog.GroupValue(layers...)))
	b.cuts = e.cuts
}

// probeTarget is the running probe's target in bit/s, 0 when none runs.
// b.mu is held.
func (b *bandwidth) probeTarget() float64 {
	if b.probe.active {
		return b.probe.target
	}
	return 0
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

// repairRate is the rate resends may take, in bit/s: repairShare of the
// estimate on a congested connection whose allocation paused video, 0
// (no limit) on any other (repair.go says why).
// b.mu is held.
func (b *bandwidth) repairRate() float64 {
	if !b.congested || !b.pausedAny() {
		return 0
	}
	return repairShare * b.est.estimate
}

// pausedAny reports whether the allocation has paused a subscription of
// the connection. b.mu is held.
func (b *bandwidth) pausedAny() bool {
	for _, a := range b.subs {
		if a.layer < 0 {
			return true
		}
	}
	return false
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

// order orders video subscriptions for the allocation: by videoPriority,
// then one playing before one the allocation paused, then the one
// playing longest (added or resumed first), then the one subscribed
// first. The order must not move from one run to the next: taken in the
// subs map's order, two cameras of which only one fits took turns being
// the one short of budget, neither was short for pauseAfter in a row,
// and both kept sending until the estimate fell under one camera, when
// both paused; and a paused one took the budget of the one still
// playing, which was paused in its turn. Among equals, what was resumed
// or added last is paused first: it is what the link was not known to
// carry. b.mu is held.
func (b *bandwidth) order(x, y *Subscription) int {
	ax, ay := b.subs[x], b.subs[y]
	return cmp.Or(videoPriority(x)-videoPriority(y), ax.pausedRank()-ay.pausedRank(),
		cmp.Compare(ax.since, ay.since), cmp.Compare(ax.seq, ay.seq))
}

// pausedRank is 1 for a subscription the allocation paused, else 0.
func (a *allocation) pausedRank() int {
	if a.layer < 0 {
		return 1
	}
	return 0
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
	slices.SortFunc(video, b.order)
	grant, budget := b.lowest(video, budget, now)
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

// lowest grants the video subscriptions, in order, their lowest layer
// while the budget carries it, and returns the grants (-1: paused) and
// the budget left. A subscription the allocation paused resumes as an
// upgrade does: after its hold (mayResume) and within upgradeMargin. One
// not paused keeps its lowest layer until that has not fitted the
// budget for pauseAfter.
//
// On a link that carries some of them and not all, they must not pause
// and resume together (measured: two cameras behind 300 kbit/s, where
// one fits, both dark half of every 11 s). So one run pauses only the
// last in order of those due, and the others' wait starts again: that
// pause frees what it sent, which may well make them fit. And one run
// resumes at most one, and none within upgradeHold of the last resume
// on the connection, so the estimate shows whether that one holds before
// the next is tried. b.mu is held.
func (b *bandwidth) lowest(video []*Subscription, budget float64, now time.Duration) ([]int, float64) {
	grant := make([]int, len(video))
	due, dark := -1, b.dark()
	for i, s := range video {
		a, r := b.subs[s], layerRate(s.pub, s.lowestLayer())
		grant[i] = -1
		switch {
		case s.paused.Load():
			grant[i] = a.layer // the subscriber's own pause: leave as is
		case a.layer < 0:
			if b.mayResume(a, now, dark) && r <= budget*upgradeMargin {
				grant[i], budget, b.resumed = s.lowestLayer(), budget-r, now
			}
		default:
			if b.short(a, r, budget, now) {
				due = i
			}
			grant[i], budget = s.lowestLayer(), max(budget-r, 0)
		}
	}
	for i, s := range video[:max(due, 0)] {
		if a := b.subs[s]; grant[i] >= 0 && a.layer >= 0 && a.short >= 0 && now-a.short >= pauseAfter {
			a.short = now // a fresh look once the one due last is paused
		}
	}
	if due >= 0 {
		grant[due] = -1
	}
	return grant, budget
}

// short reports whether a subscription holding its lowest layer, at r
// bit/s, is due for a pause: that layer has not fitted budget for
// pauseAfter. b.mu is held.
func (b *bandwidth) short(a *allocation, r, budget float64, now time.Duration) bool {
	if r <= budget {
		a.short = -1
		return false
	}
	if a.short < 0 {
		a.short = now
	}
	return now-a.short >= pauseAfter
}

// mayResume reports whether a paused subscription may resume at now:
// upgradeHold after the connection's last resume, and its own hold after
// its pause. That hold doubles each time a resume is undone within
// 2×upgradeHold (apply), which spaces out the tries of a track the link
// does not carry while another video plays; while none plays it waits
// upgradeHold at most (see mayRaise). b.mu is held.
func (b *bandwidth) mayResume(a *allocation, now time.Duration, dark bool) bool {
	hold := a.hold
	if dark {
		hold = min(hold, upgradeHold)
	}
	return now-b.resumed >= upgradeHold && now-a.changed >= hold
}

// dark reports whether no video subscription of the connection plays:
// each is paused, by the allocation or by its subscriber. b.mu is held.
func (b *bandwidth) dark() bool {
	for s, a := range b.subs {
		if s.pub.kind == webrtc.RTPCodecTypeVideo && a.layer >= 0 && !s.paused.Load() {
			return false
		}
	}
	return true
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
		a.since = now
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
