package sfu

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// maxLayers is how many simulcast layers a publication takes: 0 is the
// lowest (q), 2 the highest (f).
const maxLayers = 3

// A layer is one encoding of a publication: the only one of a track sent
// without simulcast, or one RID of a simulcast track. Each has its own
// SSRC, read loop, NACK history and keyframe requester (a keyframe is
// asked for on the layer a subscriber waits to switch to, not on all).
type layer struct {
	pub    *Publication
	index  int    // 0 lowest; the only layer of a plain track is 0
	rid    string // "" without simulcast
	ssrc   uint32 // the publisher's media SSRC, for PLIs
	remote *webrtc.TrackRemote

	ring      *packetRing        // NACK history; nil for audio
	keyframes *keyframeRequester // nil for audio

	// Whether the publisher still sends the layer (see track). Written by
	// the publication's read loops.
	lastAt  atomic.Int64  // the newest packet's arrival, since ringClock
	others  atomic.Uint64 // packets of the other layers since then
	stopped atomic.Bool

	// size is the resolution of the layer's latest VP8 keyframe, width<<16
	// | height, or 0 while unknown (see noteSize). Written by its read loop.
	// declared is the one the publisher's offer gave it (see declaredSize),
	// set once as the layer arrives; a keyframe's wins.
	size     atomic.Uint32
	declared atomic.Uint32
	// The layer's bitrate, for the subscribers' bandwidth allocation:
	// bps is read by any goroutine; the window is the read loop's own.
	bps       atomic.Int64
	rateBytes int
	rateFrom  time.Duration
}

// rateSpan is the window a layer's bitrate is measured over: a few
// frames at the lowest frame rates, short enough to follow a publisher
// changing its encoding.
const rateSpan = time.Second

// meter counts a packet of size bytes arriving at at into the layer's
// bitrate. Only the layer's read loop calls it.
func (l *layer) meter(at time.Duration, size int) {
	if l.rateFrom == 0 {
		l.rateFrom = at
	}
	l.rateBytes += size
	if d := at - l.rateFrom; d >= rateSpan {
		l.bps.Store(int64(float64(l.rateBytes*8) / d.Seconds()))
		l.rateBytes, l.rateFrom = 0, at
	}
}

// newLayer makes the state of one encoding of p.
func newLayer(p *Publication, index int, remote *webrtc.TrackRemote) *layer {
	l := &layer{pub: p, index: index, remote: remote}
	if remote != nil {
		l.rid, l.ssrc = remote.RID(), uint32(remote.SSRC())
	}
	if p.kind == webrtc.RTPCodecTypeVideo {
		e := p.engine
		l.ring = newPacketRing(e.cfg.RetransmitPackets, &e.metrics.nackBufferBytes)
		l.keyframes = newKeyframeRequester(e.cfg.PLIInterval, l.sendPLI, p.countThrottled)
	}
	return l
}

// A publisher may stop sending a layer on its own: Chrome drops its top
// layers when its uplink estimate falls, and resumes them when it
// recovers. A layer counts as stopped once it has sent nothing for
// stoppedAfter while the other layers sent at least stoppedOthers
// packets: a paused encoder, not a slow one (a still screen share sends
// every layer's frames together, however rarely). Subscriptions then
// leave it, and come back when it sends again.
const (
	stoppedAfter  = 2 * time.Second
	stoppedOthers = 100
)

// track records a packet of layer l arriving at at and notices layers
// stopping and resuming; on either, every subscription picks its layer
// again. It allocates nothing unless a layer changes. A layer back after
// an outage (the publisher's network was gone) gets a keyframe request at
// once: its subscribers lost the frames meanwhile, and their decoders
// would wait seconds before asking.
func (p *Publication) track(l *layer, at time.Duration) {
	if last := time.Duration(l.lastAt.Swap(int64(at))); last != 0 && at-last >= outageGap {
		l.requestKeyframe()
	}
	l.others.Store(0)
	changed := l.stopped.Load() && l.stopped.CompareAndSwap(true, false)
	for i := range p.layers {
		o := p.layers[i].Load()
		if o == nil || o == l {
			continue
		}
		if o.others.Add(1) >= stoppedOthers && !o.stopped.Load() &&
			at-time.Duration(o.lastAt.Load()) > stoppedAfter && o.stopped.CompareAndSwap(false, true) {
			changed = true
		}
	}
	if changed {
		for _, s := range *p.subs.Load() {
			s.retarget()
		}
	}
}

// ridOrder is the usual naming of three layers, lowest first (LiveKit's
// and most browser clients'): quarter, half, full resolution.
var ridOrder = []string{"q", "h", "f"}

// layerIndex places the encoding rid among the encodings recv receives:
// q, h and f by their names, any other RIDs in the order the offer's
// a=rid lines list them, which a sender writes lowest first. It returns
// -1 for a fourth layer or more.
func layerIndex(rid string, recv *webrtc.RTPReceiver) int {
	if rid == "" {
		return 0
	}
	if i := slices.Index(ridOrder, rid); i >= 0 {
		return i
	}
	for i, t := range recv.Tracks() {
		if t.RID() == rid {
			if i >= maxLayers {
				return -1
			}
			return i
		}
	}
	return -1
}

// setReadDeadline ends the layer's blocked reads (RTP and RTCP) at t.
func (l *layer) setReadDeadline(t time.Time) {
	_ = l.remote.SetReadDeadline(t)
	if l.rid == "" {
		_ = l.pub.recv.SetReadDeadline(t)
	} else {
		_ = l.pub.recv.SetReadDeadlineSimulcast(t, l.rid)
	}
}

// requestKeyframe asks the publisher for a keyframe on this layer,
// throttled. Audio has no keyframes, and a muted track sends none worth
// having: its subscribers' requests stop here.
func (l *layer) requestKeyframe() {
	if l.keyframes != nil && !l.pub.muted.Load() {
		l.keyframes.request()
	}
}

// sendPLI writes one PLI for the layer's SSRC.
func (l *layer) sendPLI() {
	p := l.pub
	if p.muted.Load() { // a request held by the throttle from before a mute
		return
	}
	pli := []rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: l.ssrc}}
	if err := p.pc.WriteRTCP(pli); err != nil {
		p.engine.log.Debug("pli_write_failed", "publication", p.id, "layer", l.index, "error", err)
		return
	}
	p.engine.metrics.plis.Add(bgCtx, 1, kindOpt(p.kind))
}

// release stops the layer's keyframe requests and frees its history. A
// NACK still being answered then finds the history empty.
func (l *layer) release() {
	if l.keyframes != nil {
		l.keyframes.stop()
	}
	if l.ring != nil {
		l.ring.release()
	}
}

// drainRTCP reads the publisher's RTCP for this layer (sender reports) so
// the report interceptor sees them; our own decisions need nothing from it.
func (l *layer) drainRTCP() {
	p := l.pub
	buf := make([]byte, readBufSize)
	for errs := 0; errs < maxReadErrors; {
		var err error
		if l.rid == "" {
			_, _, err = p.recv.Read(buf)
		} else {
			_, _, err = p.recv.ReadSimulcastRTCP(l.rid)
		}
		if err == nil {
			errs = 0
		} else if p.stopping() || isEnd(err) {
			return
		} else {
			errs++
		}
	}
}
