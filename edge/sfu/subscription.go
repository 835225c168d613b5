package sfu

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A Subscription is one outgoing stream on a SubscriberConn: its
// downTrack, whose source is a publication. The track is bound by Pion
// once the subscriber's answer is applied; until then, and once its
// sender stops (Close, or the subscriber's connection closed), packets for
// it are skipped. For video, the subscriber's feedback is acted on:
// keyframe requests go to the publisher, NACKs are answered from the
// publication's buffer; that feedback is delivered by the connection's
// rtcpRouter. Audio needs nothing: Opus is neither
// NACKed nor keyframed, so a subscriber's reports about it are dropped.
//
// The source is fixed today. With simulcast it becomes the layer the
// SubscriberConn picks for this subscription within its bandwidth
// estimate; writeRTP, the one writer of the stream, is where SSRC,
// sequence number and timestamp will be rewritten across a switch.
type Subscription struct {
	pub    *Publication
	conn   *SubscriberConn
	sender *webrtc.RTPSender
	track  *downTrack

	bound atomic.Pointer[binding] // nil while unbound

	// router delivers the subscriber's RTCP to a video subscription
	// (nil for audio); rtx answers the NACKs (nil for audio).
	router *rtcpRouter
	rtx    *retransmitter

	// fwd is the header written to this subscriber, reused for every
	// forwarded packet; flowing says the first packet was written. Only the
	// publication's read loop touches them.
	fwd     rtp.Header
	flowing bool
	first   chan struct{} // closed once flowing

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
	return s, nil
}

// newSubscription makes the subscription's state, not yet in pc or in the
// fan-out.
func newSubscription(p *Publication, c *SubscriberConn) *Subscription {
	s := &Subscription{pub: p, conn: c, done: make(chan struct{}), first: make(chan struct{})}
	s.track = &downTrack{sub: s}
	return s
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
		s.pub.engine.metrics.subscriptions.Add(bgCtx, -1, kindOpt(s.pub.kind))
		s.pub.engine.metrics.activeSubs.Add(-1)
		close(s.done)
	})
	<-s.done
	return s.closeErr
}

// writeRTP forwards one packet with the subscriber's SSRC and payload
// type. It is called only by the publication's read loop and allocates
// nothing. It reports whether the packet was sent.
func (s *Subscription) writeRTP(h *rtp.Header, payload []byte) bool {
	b := s.bound.Load()
	if b == nil {
		return false
	}
	s.fwd = *h
	s.fwd.SSRC = b.ssrc
	s.fwd.PayloadType = b.pt
	n, err := b.w.WriteRTP(&s.fwd, payload)
	if err != nil || n == 0 {
		return false
	}
	if !s.flowing {
		s.flowing = true
		close(s.first)
	}
	return true
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
	b := &binding{id: ctx.ID(), ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), w: ctx.WriteStream()}
	t.sub.bound.Store(b)
	if r := t.sub.router; r != nil {
		r.route(b.ssrc, t.sub.onRTCP)
	}
	pub.requestKeyframe()
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

// RID is empty: no simulcast.
func (t *downTrack) RID() string { return "" }

// StreamID is the publishing participant's id (the msid stream id).
func (t *downTrack) StreamID() string { return t.sub.pub.streamID }

// Kind is the publication's kind.
func (t *downTrack) Kind() webrtc.RTPCodecType { return t.sub.pub.kind }
