package sfu

import (
	"math"
	"time"
)

// The send-side estimate of one subscriber's downlink, GoogCC's design
// (draft-ietf-rmcat-gcc, libwebrtc's goog_cc) in a form small enough to
// read: a delay-based part that watches the one-way delay's trend and a
// loss-based part, each fed the transport-wide feedback the subscriber
// sends about every 100 ms. It runs on the goroutine that reads the
// feedback and starts none.
//
// Why our own and not pion/interceptor's pkg/gcc. Measured on the same
// link and the same receiver (pion's TWCC recorder), in fake time
// (TestCompareWithPionGCC): a sender wanting 2 Mbit/s on 4 Mbit/s, then
// the link falls to 500 kbit/s. From 5 s after the fall pion's estimate
// averages about 484 kbit/s (at most about 554), ours about 447 (at most
// about 537). Ours rode about 14 % over the link until a packet missing
// from one feedback counted as lost only once the next had not reported
// it late (measured, not explained: the loss cuts come one feedback
// later and from a fuller count). We keep
// ours, for what the allocation needs and pion's does not offer: pion's
// records send times itself (its own header parse and lock per packet,
// beside the stamp we write anyway), runs two goroutines per estimator
// and one per rate change, and has no way to take a probe's result,
// which is what lets a capped subscriber climb back within seconds.

// Tuning, from GoogCC's published defaults where it has one.
const (
	groupSpan      = 5 * time.Millisecond // packets sent this close form one group
	trendWindow    = 20                   // groups in the delay trend's regression
	trendSmoothing = 0.9                  // of the accumulated delay
	trendGain      = 4.0                  // scales the slope before the threshold
	thresholdInit  = 12.5                 // ms; adaptive, within [thresholdMin, 600]
	// thresholdMin is 12, not libwebrtc's 6: receive timestamps taken by
	// a busy client (or a loaded test host) jitter enough that a
	// threshold of 6 reads noise as overuse and starves the link.
	thresholdMin  = 12
	thresholdUp   = 0.0087 // adaptation when above the threshold
	thresholdDown = 0.039  // and below it
	overuseFor    = 10 * time.Millisecond
	// queueFloor: the trend's overuse counts only while the one-way delay
	// stands this far above its recent minimum. A bottleneck's queue holds
	// delay up for as long as it overruns the link; a busy receiver's
	// late timestamps (a starved process, a loaded host) make a steep
	// trend too, but a shallow one that falls back to the baseline.
	queueFloor = 30 * time.Millisecond
	// minDelayWindow: the baseline is the least one-way delay seen over
	// about this long, short enough to follow a route change or clock
	// drift, long enough to span the drain after a decrease.
	minDelayWindow = 10 * time.Second

	// backoff: on overuse the estimate falls to this share of the rate
	// the receiver acknowledged (throughput), and a loss cut never takes
	// it below that: what got through is what the link carries, and a
	// cut far under it (the old halving by the loss of a layer switch's
	// last packets) left less than the lowest layer.
	backoff       = 0.85
	increasePerS  = 0.08 // multiplicative increase per second
	ackedHeadroom = 1.5  // the estimate never exceeds this times what arrives
	decreaseGap   = 200 * time.Millisecond
	lossHigh      = 0.10 // above: cut by half the loss, to no less than backoff×acked
	lossLow       = 0.02 // below: loss does not hold the estimate back
	// obeyWait: for this long after a decrease that went to the link's
	// level (backoff × throughput), no further decrease while the sender
	// still sends above the estimate (by obeySlack): the loss and queuing
	// of what it sends then are the excess the last cut already
	// answered. A simulcast subscription falls to a lower layer only at
	// that layer's keyframe, a few hundred ms after the cut; cuts on the
	// old layer's loss meanwhile took a 400 kbit/s link's estimate from
	// 290 to 163 kbit/s in 1 s, under the lowest layer.
	obeyWait   = time.Second
	obeySlack  = 1.25
	rateWindow = 500 * time.Millisecond
	// outageGap: arrivals this far apart are an outage (the subscriber's
	// network was gone: a tunnel, a network change), not congestion. A
	// queue holds packets for a few hundred ms at most; a stream that
	// fed the estimate sends far more often than this.
	outageGap = time.Second

	minEstimate = 50_000     // bit/s: audio and a little more always fit
	maxEstimate = 50_000_000 // bit/s
)

// usage is the delay detector's verdict on the link.
type usage int8

const (
	usageNormal usage = iota
	usageOver
	usageUnder
)

// estimator is one connection's bandwidth estimate. It is not safe for
// concurrent use: its SubscriberConn feeds it from the feedback goroutine.
type estimator struct {
	estimate float64 // bit/s; 0 until the first rate is measured
	state    usage

	// The group being gathered and the previous complete one.
	cur, prev packetGroup
	// Delay trend: accumulated and smoothed delay variation, and the
	// regression window of (arrival ms, smoothed delay ms).
	accumulated, smoothed float64
	firstArrival          time.Duration
	window                [trendWindow][2]float64
	n                     int // points in window (ring)
	deltas                int // delay deltas seen, capped at 60 in the gain
	threshold             float64
	lastThreshold         time.Duration
	overSince             time.Duration // when the trend first went over; -1 not over
	prevTrend             float64
	overCount             int // deltas over the threshold in a row

	// One-way delay (arrival by the receiver's clock − send by ours,
	// offset included): the least over each of the last two halves of
	// minDelayWindow, the current half started at minFrom, and the
	// queuing delay above that least of the newest group and the one
	// before. bunched: the newest group arrived within half its send
	// spacing of the one before.
	minDelay             [2]time.Duration
	minFrom              time.Duration
	queuing, prevQueuing time.Duration
	bunched              bool

	// Received rate over rateWindow, by arrival time: acked the newest
	// window's, prevAcked the one before, and when (by our clock) the
	// one before was measured.
	acked, prevAcked float64 // bit/s
	prevAckedAt      time.Duration
	ackedAt          time.Duration
	rateBytes        int
	rateFrom         time.Duration
	rateAt           time.Duration // arrival time of the newest packet counted

	// Loss over the feedback since the last loss decision. A packet
	// missing from one feedback is lost only if the next does not report
	// it received after all (late): missing counts this feedback's,
	// unconfirmed the previous one's.
	lost, total          int
	missing, unconfirmed int
	lastDecrease         time.Duration // by our clock
	// lossFrom: packets sent before it were lost to an outage, not to
	// congestion, and do not count as loss. outages counts them.
	lossFrom time.Duration
	outages  int
	late     int // packets reported lost, then received
	// sendRate: the rate at which the packets of the newest feedback sent
	// since the last decrease left (bit/s, by our send times, lost ones
	// included); 0 when they span too little time to tell.
	sendRate float64
	// deep: the last decrease went to backoff × throughput.
	deep bool
	// loss is the share lost at the last loss decision (for the trace);
	// cuts counts decreases, cause names the last one's ("delay" or
	// "loss").
	loss   float64
	lossOf int // the packets that decision counted
	cuts   int
	cause  string
	// quietUntil: overuse in packets sent before it is a failed probe's
	// backlog, already answered.
	quietUntil time.Duration
	lastUpdate time.Duration
}

// packetGroup is a burst of packets sent within groupSpan.
type packetGroup struct {
	firstSent, lastSent time.Duration
	arrived             time.Duration // the last packet's arrival
	size                int
	valid               bool
}

func newEstimator() *estimator {
	return &estimator{threshold: thresholdInit, overSince: -1, lastDecrease: -time.Hour,
		minDelay: [2]time.Duration{math.MaxInt64, math.MaxInt64}}
}

// update takes the results of one feedback message, received at now (our
// clock), and returns the new estimate in bit/s (0 while none is known).
func (e *estimator) update(now time.Duration, results []packetResult) float64 {
	var sentBytes int
	var sentFrom, sentTo time.Duration = -1, 0
	for _, r := range results {
		if !r.late && r.sent >= e.lastDecrease {
			sentBytes += r.size
			if sentFrom < 0 {
				sentFrom = r.sent
			}
			sentTo = max(sentTo, r.sent)
		}
		if r.received && e.rateAt > 0 && r.arrived-e.rateAt >= outageGap {
			e.outage(r.sent, r.arrived)
		}
		// Loss counts only for packets sent after the last decrease: the
		// ones before it were sent at the rate already cut.
		switch {
		case r.late:
			e.unconfirmed = max(e.unconfirmed-1, 0)
			e.late++
		case r.sent >= max(e.lastDecrease, e.lossFrom):
			e.total++
			if !r.received {
				e.missing++
			}
		}
		if !r.received {
			continue
		}
		e.countRate(now, r)
		e.addPacket(r)
	}
	e.lost += e.unconfirmed
	e.unconfirmed, e.missing = e.missing, 0
	e.sendRate = 0
	if span := sentTo - sentFrom; sentFrom >= 0 && span >= 50*time.Millisecond {
		e.sendRate = float64(sentBytes*8) / span.Seconds()
	}
	e.control(now)
	return e.estimate
}

// outage forgets what the silence before a packet sent at sent and
// arrived at arrived would otherwise say: the loss counted since the last
// decision (the outage's own), the rate window spanning it, and the delay
// trend across it. The estimate stays: the network that comes back is
// most often the one that went, and should it carry less, the feedback
// after the outage says so within a few hundred ms.
func (e *estimator) outage(sent, arrived time.Duration) {
	e.lost, e.total, e.missing, e.unconfirmed, e.lossFrom = 0, 0, 0, 0, sent
	e.outages++
	e.rateBytes, e.rateFrom = 0, arrived
	e.cur.valid, e.prev.valid = false, false
	e.restartTrend()
}

// countRate adds a received packet, reported at now, to the
// acknowledged rate.
func (e *estimator) countRate(now time.Duration, r packetResult) {
	if e.rateBytes == 0 && e.rateFrom == 0 {
		e.rateFrom = r.arrived
	}
	if r.arrived < e.rateAt {
		e.rateBytes += r.size // reordered: counts, does not move time
		return
	}
	e.rateAt = r.arrived
	e.rateBytes += r.size
	if span := e.rateAt - e.rateFrom; span >= rateWindow {
		e.prevAcked, e.prevAckedAt = e.acked, e.ackedAt
		e.acked, e.ackedAt = float64(e.rateBytes*8)/span.Seconds(), now
		e.rateBytes, e.rateFrom = 0, e.rateAt
	}
}

// addPacket puts a received packet into its send group, and feeds the
// delay trend when a group completes.
func (e *estimator) addPacket(r packetResult) {
	g := &e.cur
	if !g.valid {
		*g = packetGroup{firstSent: r.sent, lastSent: r.sent, arrived: r.arrived, size: r.size, valid: true}
		return
	}
	if r.sent < g.firstSent {
		return // from an older group, reordered
	}
	if r.sent-g.firstSent <= groupSpan {
		g.lastSent = max(g.lastSent, r.sent)
		g.arrived = max(g.arrived, r.arrived)
		g.size += r.size
		return
	}
	e.observeDelay(g.arrived-g.lastSent, g.arrived)
	if e.prev.valid {
		e.addDelta(e.cur.lastSent-e.prev.lastSent, e.cur.arrived-e.prev.arrived, e.cur.arrived)
	}
	e.prev = e.cur
	*g = packetGroup{firstSent: r.sent, lastSent: r.sent, arrived: r.arrived, size: r.size, valid: true}
}

// observeDelay takes a complete group's one-way delay, arrived at at,
// into the baseline and sets the queuing delay above it.
func (e *estimator) observeDelay(owd, at time.Duration) {
	if at-e.minFrom >= minDelayWindow/2 {
		e.minDelay[0], e.minDelay[1], e.minFrom = e.minDelay[1], owd, at
	}
	e.minDelay[1] = min(e.minDelay[1], owd)
	e.prevQueuing, e.queuing = e.queuing, owd-min(e.minDelay[0], e.minDelay[1])
}

// standingQueue reports whether the delay says a bottleneck queues: the
// newest group waited at least queueFloor, and either no less than the
// one before or not bunched with it. A queue fed faster than it drains
// grows, and a full one delivers spaced by what each packet takes on
// the wire; the backlog of a stalled receiver, stamped all at once when
// it wakes, shrinks by the send spacing from one group to the next.
func (e *estimator) standingQueue() bool {
	return e.queuing >= queueFloor && (e.queuing >= e.prevQueuing || !e.bunched)
}

// addDelta adds one inter-group delay variation to the trend and
// detects over- and underuse.
func (e *estimator) addDelta(sendDelta, arriveDelta, arrived time.Duration) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	d := ms(arriveDelta) - ms(sendDelta)
	e.bunched = 2*arriveDelta < sendDelta
	if e.deltas == 0 {
		e.firstArrival = arrived
	}
	e.deltas++
	e.accumulated += d
	e.smoothed = trendSmoothing*e.smoothed + (1-trendSmoothing)*e.accumulated
	e.window[e.n%trendWindow] = [2]float64{ms(arrived - e.firstArrival), e.smoothed}
	e.n++
	if e.n < trendWindow {
		return
	}
	trend := float64(min(e.deltas, 60)) * slope(e.window[:]) * trendGain
	e.detect(trend, arrived)
	e.adaptThreshold(trend, arrived)
}

// slope is the least-squares slope of the points (x, y).
func slope(pts [][2]float64) float64 {
	var sx, sy float64
	for _, p := range pts {
		sx += p[0]
		sy += p[1]
	}
	mx, my := sx/float64(len(pts)), sy/float64(len(pts))
	var num, den float64
	for _, p := range pts {
		num += (p[0] - mx) * (p[1] - my)
		den += (p[0] - mx) * (p[0] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// detect compares the trend with the threshold: overuse once it has been
// above for overuseFor and is not falling, over a standing queue;
// underuse below its negative.
func (e *estimator) detect(trend float64, at time.Duration) {
	switch {
	case trend > e.threshold:
		if e.overSince < 0 {
			e.overSince, e.overCount = at, 0
		}
		e.overCount++
		if !e.standingQueue() {
			e.state = usageNormal
		} else if at-e.overSince >= overuseFor && e.overCount > 1 && trend >= e.prevTrend {
			e.state = usageOver
		}
	case trend < -e.threshold:
		e.overSince = -1
		e.state = usageUnder
	default:
		e.overSince = -1
		e.state = usageNormal
	}
	e.prevTrend = trend
}

// adaptThreshold moves the threshold toward the trend, slowly up and
// faster down, so that competing TCP does not starve us and that a noisy
// link does not read as overuse.
func (e *estimator) adaptThreshold(trend float64, at time.Duration) {
	if e.lastThreshold == 0 {
		e.lastThreshold = at
	}
	abs := math.Abs(trend)
	if abs > e.threshold+15 {
		e.lastThreshold = at
		return
	}
	k := thresholdUp
	if abs < e.threshold {
		k = thresholdDown
	}
	dt := min(float64(at-e.lastThreshold)/float64(time.Millisecond), 100)
	e.threshold = min(max(e.threshold+k*(abs-e.threshold)*dt, thresholdMin), 600)
	e.lastThreshold = at
}

// control moves the estimate after a feedback message: down on overuse
// or heavy loss, held on underuse or moderate loss, up otherwise, though
// never by itself above what the link was seen to carry times
// ackedHeadroom (a probe takes it higher).
func (e *estimator) control(now time.Duration) {
	dt := now - e.lastUpdate
	e.lastUpdate = now
	if e.acked == 0 {
		return // nothing measured yet
	}
	if e.estimate == 0 {
		e.estimate = e.acked * ackedHeadroom
	}
	loss := 0.0
	if e.total >= 20 {
		loss = min(float64(e.lost)/float64(e.total), 1)
		e.lost, e.total, e.loss, e.lossOf = 0, 0, loss, e.total
	}
	// lagging: the sender has not come down to the last cut yet.
	lagging := e.deep && now-e.lastDecrease < obeyWait && e.sendRate > obeySlack*e.estimate
	switch {
	case lagging:
	case e.state == usageOver && now-e.lastDecrease >= decreaseGap && e.prev.lastSent >= max(e.lastDecrease+decreaseGap/2, e.quietUntil):
		// Only once packets sent after the last decrease show overuse
		// too: the backlog of the rate before it says nothing new.
		e.decrease(now, backoff*e.throughput(), "delay")
	case loss > lossHigh && now-e.lastDecrease >= decreaseGap:
		e.decrease(now, max(e.estimate*(1-loss/2), backoff*e.throughput()), "loss")
	case e.state == usageNormal && loss < lossLow && dt > 0:
		// Up, but not past what the link was seen to carry with headroom:
		// an estimate above that (a probe's) is kept, not raised.
		limit := max(e.estimate, e.acked*ackedHeadroom+10_000)
		e.estimate = min(e.estimate*(1+increasePerS*min(dt.Seconds(), 1)), limit)
	}
	e.estimate = min(max(e.estimate, minEstimate), maxEstimate)
}

// decrease lowers the estimate to to, if that is lower, and starts the
// wait before the next.
func (e *estimator) decrease(now time.Duration, to float64, cause string) {
	e.estimate = min(e.estimate, to)
	e.cuts, e.cause = e.cuts+1, cause
	e.deep = e.estimate <= backoff*e.throughput()
	e.lastDecrease = now
	// Loss counts afresh from packets sent after it. The packets the
	// newest feedback missed were counted in the total before it; held
	// over, they made a loss of several times 100 % of the few packets
	// sent since (measured: 439 %), and a cut to the floor.
	e.lost, e.total, e.unconfirmed = 0, 0, 0
}

// throughput is what the link was seen to carry, for a decrease: the
// newest acknowledged window, or the one before if that too was
// measured since the last decrease. A decrease is decided on the delay
// or loss of packets sent a queue's length earlier; the one after a cut
// often comes once the sender has already fallen back (the layer switch
// the cut asked for), when the newest window measures what was sent,
// not what the link carries, and a cut to it goes far below the link
// (measured: a 400 kbit/s link's estimate fell to 140 kbit/s on a
// 165 kbit/s window, and the video paused). The first cut of an episode
// uses the newest window alone: the one before it may be the old link's.
func (e *estimator) throughput() float64 {
	if e.prevAckedAt > e.lastDecrease {
		return max(e.acked, e.prevAcked)
	}
	return e.acked
}

// restartTrend forgets the delay trend after a decrease: the queue the
// old rate built drains from now on, and only the delays of what is sent
// from now say whether the new rate still overuses.
func (e *estimator) restartTrend() {
	e.n, e.deltas, e.accumulated, e.smoothed = 0, 0, 0, 0
	e.state, e.overSince, e.prevTrend = usageNormal, -1, 0
}

// probed raises the estimate to a rate a probe delivered without
// overuse: the one fast way up.
func (e *estimator) probed(rate float64) {
	if e.state != usageOver && rate > e.estimate {
		e.estimate = min(rate, maxEstimate)
	}
}

// overusing reports whether the delay detector sees overuse now.
func (e *estimator) overusing() bool { return e.state == usageOver }
