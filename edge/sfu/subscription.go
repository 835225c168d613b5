package sfu

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A Subscription is one outgoing stream on a SubscriberConn: its
// downTrack, with its own SSRC, sequence numbers and timestamps, fed from
// one layer of its publication at a time. The track is bound by Pion
// once the subscriber's answer is applied; until then, and once its
// sender stops (Close, or the subscriber's connection closed), packets for
// it are skipped. For video, the subscriber's feedback is acted on:
// keyframe requests go to the publisher (on the layer being forwarded),
// NACKs are answered from that layer's history; that feedback is
// delivered by the connection's rtcpRouter. Audio needs nothing: Opus is
// neither NACKed nor keyframed, so a subscriber's reports about it are
// dropped.
//
// Layers. The layer forwarded is the target: the highest layer the
// publication has that is at most both the requested layer (SetMaxLayer:
// what the subscriber asks for, from signaling or adaptive stream) and
// the allocated one (SetAllocatedLayer: what the connection's bandwidth
// estimate leaves it), or none while paused (Pause). When the target
// changes, a keyframe is asked for on the target layer, and the stream
// switches when one arrives, not before: until then the old layer goes
// on. The munger rewrites every packet so the subscriber sees one stream
// across switches: sequence numbers continuous, timestamps rising by the
// time between the last packet of the old layer and the keyframe, VP8
// picture IDs and TL0PICIDX continuous; a NACK maps back through its
// spans to the layer and source sequence number it was sent from. A plain
// (non-simulcast) track has one layer and its stream is the publisher's,
// unchanged but for SSRC and payload type.
//
// How the next waves plug in: the signaling's quality requests and
// adaptive stream's rendered sizes call SetMaxLayer, Pause and Resume;
// the SubscriberConn's bandwidth estimator calls SetAllocatedLayer for
// each subscription it caps; dynacast reads MaxLayer across a
// publication's subscriptions to tell the publisher which layers anyone
// needs.
type Subscription struct {
	// What every forwarded packet reads comes first, in as few cache
	// lines as it can: a fan-out writes each packet to every subscription
	// in turn, so each one's state is cold by the time its copy comes.
	// twcc and pacer are conn's, held here so a copy does not go through
	// the connection and its congestion control to reach them; stream is
	// where the bound stream's packets go at the bottom of conn's
	// interceptor chain, once found (see write; changed under mu).
	bound  atomic.Pointer[binding] // nil while unbound
	stream atomic.Pointer[directStream]
	pub    *Publication
	twcc   *twccSender
	pacer  *pacer
	target atomic.Int32 // chosen from quality, maxSize, allocated, paused; -1 none

	// mu guards the stream's state below: the layers' read loops write
	// packets concurrently, and NACKs are mapped through the spans. fwd is
	// the header written to this subscriber, reused for every forwarded
	// packet; scratch holds a VP8 payload whose descriptor is rewritten;
	// flowing says the first packet was written. m is last: its history
	// of spans, read only on a switch or a NACK, ends it.
	mu      sync.Mutex
	flowing bool
	fwd     rtp.Header
	fwdExt  [1]rtp.Extension // fwd's extensions: the transport-wide sequence
	twccSeq [2]byte
	scratch []byte
	found   *binding // the binding stream was looked up for
	m       munger

	conn   *SubscriberConn
	sender *webrtc.RTPSender
	track  *downTrack
	first  chan struct{} // closed once flowing

	// router delivers the subscriber's RTCP to a video subscription
	// (nil for audio); rtx answers the NACKs (nil for audio).
	router *rtcpRouter
	rtx    *retransmitter

	// reqMu orders the writers of the request (ApplyRequest, SetMaxLayer,
	// and a layer's new size through resize), so requested always follows
	// the latest quality and size; readers need no lock.
	reqMu     sync.Mutex
	quality   atomic.Int32  // the highest layer asked for
	maxSize   atomic.Uint32 // the size to cover, width<<16 | height; 0 none
	requested atomic.Int32  // from the two above; starts at the highest
	allocated atomic.Int32  // the layer the bandwidth estimate allows
	paused    atomic.Bool

	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed when the subscription has ended
}

// binding is what Pion gave the downstream track when it bound it to the
// subscriber's sender: where to write and with which SSRC and payload type.
type binding struct {
	id   string
	ssrc uint32
	pt   uint8
	twcc uint8 // transport-cc extension id; 0 when not negotiated
	w    webrtc.TrackLocalWriter
}

// subscribe is SubscriberConn.Subscribe: it adds the track to c and puts
// the subscription into the fan-out.
func (p *Publication) subscribe(c *SubscriberConn) (*Subscription, error) {
	s := newSubscription(p, c)
	if p.kind == webrtc.RTPCodecTypeVideo {
		// Before AddTrack: once the track is on the connection, a
		// negotiation already under way (another subscription's offer)
		// may Bind it, and Bind reads the router.
		s.rtx = newRetransmitter(s)
		s.router = c.router
	}
	sender, err := c.addTrack(s.track)
	if err != nil {
		return nil, fmt.Errorf("sfu: subscribe to %s: add track: %w", p.id, err)
	}
	s.sender = sender
	p.engine.metrics.subscriptions.Add(bgCtx, 1, kindOpt(p.kind))
	p.engine.metrics.activeSubs.Add(1)
	if err := p.add(s); err != nil {
		_ = s.detach()
		return nil, err
	}
	// A layer that attached (or stopped, or resumed) after newSubscription
	// chose the target, but retargeted the fan-out before s was in it,
	// would otherwise never be seen: choose again now that s is there.
	c.bw.add(s)
	s.retarget()
	return s, nil
}

// newSubscription makes the subscription's state, not yet in pc or in the
// fan-out.
func newSubscription(p *Publication, c *SubscriberConn) *Subscription {
	s := &Subscription{pub: p, m: newMunger(), done: make(chan struct{}), first: make(chan struct{})}
	s.setConn(c)
	s.track = &downTrack{sub: s}
	s.quality.Store(maxLayers - 1)
	s.requested.Store(maxLayers - 1)
	s.allocated.Store(maxLayers - 1)
	s.target.Store(s.chooseLayer())
	if p.vp8 {
		s.scratch = make([]byte, maxRingPacket)
	}
	return s
}

// setConn makes c the subscription's connection (nil in tests of the
// allocation alone), with the parts of it each copy uses.
func (s *Subscription) setConn(c *SubscriberConn) {
	s.conn = c
	if c != nil {
		s.twcc, s.pacer = c.bw.twcc, c.bw.pace
	}
}

// A Request is what a subscriber asks of one subscription.
type Request struct {
	// MaxLayer is the highest layer wanted (0 lowest, 2 highest; a
	// publication without simulcast has only 0, which any value gets).
	// Out of range values are clamped.
	MaxLayer int
	// MaxWidth and MaxHeight are the size the subscriber shows the video
	// at: it gets the smallest layer that covers both, at most MaxLayer.
	// 0 bounds neither; values are clamped to 0..16384.
	MaxWidth, MaxHeight int
	// Paused stops forwarding (see Pause).
	Paused bool
}

// ApplyRequest sets everything the subscriber asks for in one step, so
// the layer is chosen (and a keyframe asked for) once.
func (s *Subscription) ApplyRequest(r Request) {
	w := min(max(r.MaxWidth, 0), maxFrameSide)
	h := min(max(r.MaxHeight, 0), maxFrameSide)
	s.reqMu.Lock()
	s.quality.Store(clampLayer(r.MaxLayer))
	s.maxSize.Store(uint32(w)<<16 | uint32(h))
	s.paused.Store(r.Paused)
	s.requested.Store(s.wanted())
	s.reqMu.Unlock()
	s.retarget()
	s.pub.needChanged()
}

// Apply is ApplyRequest with a layer and no size.
func (s *Subscription) Apply(maxLayer int, paused bool) {
	s.ApplyRequest(Request{MaxLayer: maxLayer, Paused: paused})
}

// SetMaxLayer sets the highest layer the subscriber asks for, keeping
// the rest of its request (see Request.MaxLayer).
func (s *Subscription) SetMaxLayer(layer int) {
	s.reqMu.Lock()
	s.quality.Store(clampLayer(layer))
	s.requested.Store(s.wanted())
	s.reqMu.Unlock()
	s.retarget()
	s.pub.needChanged()
}

// wanted is the layer the request comes to: the quality cap, lowered to
// the smallest layer covering the size asked for, if any. reqMu is held.
func (s *Subscription) wanted() int32 {
	q := s.quality.Load()
	if size := s.maxSize.Load(); size != 0 {
		q = min(q, int32(s.pub.layerCovering(int(size>>16), int(size&0xffff))))
	}
	return q
}

// resize chooses again after a layer's size became known or changed,
// when the subscription asks by size, and reports whether the layer asked
// for changed; the caller tells dynacast.
func (s *Subscription) resize() bool {
	if s.maxSize.Load() == 0 {
		return false
	}
	s.reqMu.Lock()
	want := s.wanted()
	changed := s.requested.Swap(want) != want
	s.reqMu.Unlock()
	if changed {
		s.retarget()
	}
	return changed
}

// MaxLayer is the highest layer the subscriber asks for, or -1 while
// paused: what dynacast will combine across a publication's subscribers.
func (s *Subscription) MaxLayer() int {
	if s.paused.Load() {
		return -1
	}
	return int(s.requested.Load())
}

// SetAllocatedLayer sets the highest layer the connection's bandwidth
// estimate leaves this subscription; -1 pauses it until raised again.
func (s *Subscription) SetAllocatedLayer(layer int) {
	if layer < 0 {
		s.allocated.Store(-1)
	} else {
		s.allocated.Store(clampLayer(layer))
	}
	s.retarget()
}

// Pause stops forwarding at once; Resume starts again at the next
// keyframe (asked for), with sequence numbers continuing where they were.
func (s *Subscription) Pause() {
	s.paused.Store(true)
	s.retarget()
	s.pub.needChanged()
}

// Resume undoes Pause.
func (s *Subscription) Resume() {
	s.paused.Store(false)
	s.retarget()
	s.pub.needChanged()
}

// CurrentLayer is the layer being forwarded now, or -1 (not started,
// paused, or waiting for the keyframe to resume).
func (s *Subscription) CurrentLayer() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.m.cur)
}

// TargetLayer is the layer the subscription is switching to (or is on),
// -1 for none.
func (s *Subscription) TargetLayer() int { return int(s.target.Load()) }

func clampLayer(l int) int32 { return int32(min(max(l, 0), maxLayers-1)) }

// chooseLayer is the target: the highest layer the publication has
// (and is sending) within both caps, else its lowest above them; -1 when
// paused, when the publication is muted or when it has none yet.
func (s *Subscription) chooseLayer() int32 {
	want := int(min(s.requested.Load(), s.allocated.Load()))
	if s.paused.Load() || want < 0 || s.pub.muted.Load() {
		return -1
	}
	for i := want; i >= 0; i-- {
		if s.pub.sending(i) {
			return int32(i)
		}
	}
	for i := want + 1; i < maxLayers; i++ {
		if s.pub.sending(i) {
			return int32(i)
		}
	}
	return -1
}

// retarget recomputes the target; when it changed to a layer not being
// forwarded, it asks the publisher for a keyframe on it, so the switch
// comes soon.
func (s *Subscription) retarget() {
	t := s.chooseLayer()
	if s.target.Swap(t) == t {
		return
	}
	if t < 0 {
		// Paused from now on, not from the next packet: a resume waits
		// for a keyframe.
		s.mu.Lock()
		s.m.cur = -1
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	cur := s.m.cur
	s.mu.Unlock()
	if l := s.pub.layer(int(t)); l != nil && int32(cur) != t {
		l.requestKeyframe()
		if l.keyframes != nil {
			s.pub.engine.metrics.switchKeyframes.Add(bgCtx, 1)
		}
	}
}

// requestKeyframe asks for a keyframe on the layer being forwarded, or on
// the target while none is.
func (s *Subscription) requestKeyframe() {
	s.mu.Lock()
	cur := int(s.m.cur)
	s.mu.Unlock()
	if cur < 0 {
		cur = int(s.target.Load())
	}
	if l := s.pub.layer(cur); l != nil {
		l.requestKeyframe()
	}
}

// Publication is the publication this subscription forwards.
func (s *Subscription) Publication() *Publication { return s.pub }

// Sender is the RTPSender on the subscriber's PeerConnection.
func (s *Subscription) Sender() *webrtc.RTPSender { return s.sender }

// FirstPacket is closed when the first packet has been sent to the
// subscriber: the moment its media starts, for join-time measurements.
func (s *Subscription) FirstPacket() <-chan struct{} { return s.first }

// Done is closed when the subscription has ended: Close, or its
// publication ended.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Close stops forwarding to the subscriber and removes the track from its
// PeerConnection (the caller renegotiates). A subscriber PeerConnection that is already closed is not an
// error. It is idempotent.
func (s *Subscription) Close() error {
	s.pub.remove(s)
	return s.detach()
}

// detach ends the subscription once it is out of the fan-out.
func (s *Subscription) detach() error {
	s.closeOnce.Do(func() {
		if b := s.bound.Swap(nil); b != nil && s.router != nil {
			s.router.unroute(b.ssrc)
		}
		if err := s.conn.removeTrack(s.sender); err != nil {
			s.closeErr = fmt.Errorf("sfu: unsubscribe from %s: %w", s.pub.id, err)
		}
		s.conn.bw.remove(s)
		s.pub.engine.metrics.subscriptions.Add(bgCtx, -1, kindOpt(s.pub.kind))
		s.pub.engine.metrics.activeSubs.Add(-1)
		close(s.done)
	})
	<-s.done
	return s.closeErr
}

// writeRTP forwards one packet from the publisher, rewritten into the
// subscriber's stream, if it is from the layer forwarded, or is the
// keyframe to switch to the target at. It is called only by the
// publication's read loops and allocates nothing. It reports whether the
// packet was sent.
func (s *Subscription) writeRTP(in *inbound) bool {
	b := s.bound.Load()
	if b == nil {
		return false
	}
	target := int8(s.target.Load())
	layer := int8(in.layer.index)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &s.m
	if target < 0 {
		m.cur = -1 // paused: a keyframe restarts the stream
		return false
	}
	var d *vp8Descriptor
	if s.pub.vp8 {
		d = in.vp8()
	}
	if layer != m.cur {
		// A plain track's stream starts at any packet, as the publisher
		// sends it; a switch, a resume or a simulcast start waits for a
		// keyframe.
		if layer != target || (m.started || in.layer.rid != "") && !in.keyframe() {
			return false
		}
		switched := m.started
		m.switchTo(layer, in, d, s.pub.clockRate())
		if switched {
			s.pub.engine.metrics.layerSwitches[layer].Add(1)
		}
	}
	h := in.h
	if m.before(h.SequenceNumber) {
		return false // from before the switch: its number is taken
	}
	if int16(h.SequenceNumber-m.srcHigh) > 0 {
		m.srcHigh = h.SequenceNumber
	}
	sp := m.span()
	s.fwd = *h
	s.fwd.SequenceNumber = h.SequenceNumber - sp.seq
	s.fwd.Timestamp = h.Timestamp - sp.ts
	s.fwd.SSRC = b.ssrc
	s.fwd.PayloadType = b.pt
	payload := in.payload
	if d != nil && !d.invalid && sp.vp8Rewrite(d) {
		payload = s.scratch[:copy(s.scratch, payload)]
		sp.writeVP8(payload, d)
	}
	if b.twcc != 0 {
		now := s.twcc.now() // one clock read for the pacer and the stamp
		if s.pace(payload, now) {
			s.forwarded(d, in, sp)
			return true
		}
		s.twcc.stampHeaderAt(now, &s.fwd, &s.fwdExt, &s.twccSeq, b.twcc, len(payload)+int(s.fwd.PaddingSize), false)
	}
	n, err := s.write(b, &s.fwd, payload)
	if err != nil || n == 0 {
		return false
	}
	s.forwarded(d, in, sp)
	return true
}

// write sends a packet of the stream b binds: to its directStream once
// that is found, else through the writer Pion gave b, whose one
// interceptor leads to the same place. s.mu is held.
func (s *Subscription) write(b *binding, h *rtp.Header, payload []byte) (int, error) {
	ds := s.stream.Load()
	if s.found != b || ds == nil || !ds.bound.Load() {
		// Bound anew, or the stream was not bound at the bottom yet
		// (Pion binds it there just after binding the track), or no
		// longer is.
		ds = nil
		if s.conn != nil && s.conn.direct != nil {
			ds = s.conn.direct.stream(b.ssrc)
		}
		s.found = b
		s.stream.Store(ds)
	}
	if ds == nil {
		return b.w.WriteRTP(h, payload)
	}
	return ds.Write(h, payload, nil)
}

// warm reads the first of what the next copy to s will read, for the
// fan-out to read it for all its subscriptions before the copies: each
// subscription's state is cold when its copy comes, and a copy's reads
// wait on each other (the subscription, then its binding, then its
// stream's writer...), where the fan-out's, one subscription after the
// other without using what they read, are all under way at once. The
// value means nothing; every field read is set once or atomic.
func (s *Subscription) warm() uint64 {
	v := uint64(s.target.Load())
	if b := s.bound.Load(); b != nil {
		v += uint64(b.ssrc)
	}
	if s.twcc != nil {
		v += uint64(s.twcc.epoch.Nanosecond())
	}
	if s.pacer != nil && s.pacer.now != nil {
		v++
	}
	if ds := s.stream.Load(); ds != nil {
		v += ds.warm()
	}
	return v
}

// pace hands a video packet in s.fwd to the connection's pacer, which
// may hold it (it reports true: the pacer writes it later); audio is
// never held. now is the packet's send time (the twcc clock). s.mu is
// held.
func (s *Subscription) pace(payload []byte, now time.Duration) bool {
	if s.pub.kind != webrtc.RTPCodecTypeVideo {
		return false
	}
	// On the wire: the header, the transport-wide extension (8 bytes
	// with the extension header) and the payload.
	size := 12 + 4*len(s.fwd.CSRC) + 8 + len(payload) + int(s.fwd.PaddingSize)
	return s.pacer.hold(s, &s.fwd, payload, size, now)
}

// writeHeld writes a packet the pacer held, stamped now.
func (s *Subscription) writeHeld(q *pacedPacket) {
	b := s.bound.Load()
	if b == nil || b.twcc == 0 {
		return
	}
	s.twcc.stampHeader(&q.h, &q.ext, &q.seq, b.twcc, q.n+int(q.h.PaddingSize), false)
	_, _ = b.w.WriteRTP(&q.h, q.payload[:q.n])
}

// forwarded records a packet written (or held to be) in the munger.
// s.mu is held.
func (s *Subscription) forwarded(d *vp8Descriptor, in *inbound, sp *span) {
	if d != nil && d.invalid {
		d = nil
	}
	s.m.sent(s.fwd.SequenceNumber, s.fwd.Timestamp, in.at, d, sp)
	if !s.flowing {
		s.flowing = true
		close(s.first)
	}
}

// downTrack is the webrtc.TrackLocal of one subscription. Unlike
// TrackLocalStaticRTP it marshals nothing itself: Bind hands its
// subscription the writer, SSRC and payload type, and the publication
// writes the publisher's header and payload straight through.
type downTrack struct{ sub *Subscription }

// Bind is called by Pion when the subscriber's negotiation settles the
// codec. It picks the negotiated codec that carries the publisher's
// bitstream, and asks for a keyframe so the subscriber's decoder starts.
//
// When the subscriber cannot decode the publisher's codec (H.264 to a
// client without it: we forward, we do not transcode) the track stays
// unbound and silent, and Bind still succeeds: Pion fails the whole
// SetRemoteDescription on a Bind error, which would cut the subscriber
// off from every other track.
func (t *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	pub := t.sub.pub
	negotiated := ctx.CodecParameters()
	c, ok := matchCodec(pub.codec.RTPCodecCapability, negotiated)
	if !ok {
		pub.engine.log.Info("subscriber_codec_unsupported", "publication", pub.id,
			"codec", pub.codec.MimeType, "fmtp", pub.codec.SDPFmtpLine)
		if len(negotiated) == 0 {
			return webrtc.RTPCodecParameters{}, fmt.Errorf("sfu: bind %s: %w", pub.id, webrtc.ErrUnsupportedCodec)
		}
		return negotiated[0], nil
	}
	b := &binding{id: ctx.ID(), ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), twcc: twccExtensionID(ctx), w: ctx.WriteStream()}
	t.sub.bound.Store(b)
	if r := t.sub.router; r != nil {
		r.route(b.ssrc, t.sub.onRTCP)
	}
	t.sub.requestKeyframe()
	return c, nil
}

// Unbind is called by Pion when the sender stops: on Close, or when the
// subscriber's connection closes. From then on nothing is written to the
// subscription, though it stays in the fan-out until Close.
func (t *downTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	if b := t.sub.bound.Load(); b != nil && b.id == ctx.ID() {
		t.sub.bound.CompareAndSwap(b, nil)
		if r := t.sub.router; r != nil {
			r.unroute(b.ssrc)
		}
	}
	return nil
}

// ID is the publication's id: stable for as long as it is published.
func (t *downTrack) ID() string { return t.sub.pub.id }

// RID is empty: whatever the publication's layers, the subscriber gets
// one stream.
func (t *downTrack) RID() string { return "" }

// StreamID is the publishing participant's id (the msid stream id).
func (t *downTrack) StreamID() string { return t.sub.pub.streamID }

// Kind is the publication's kind.
func (t *downTrack) Kind() webrtc.RTPCodecType { return t.sub.pub.kind }
