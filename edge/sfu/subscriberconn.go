package sfu

import (
	"errors"
	"fmt"
	"sync"

	"github.com/pion/webrtc/v4"
)

// SubscriberConn is the connection a participant receives on: the server
// offers and only sends. It owns its PeerConnection and keeps its own
// discipline: every change to it (an offer, the answer, a trickled
// candidate, a track added or removed) goes through its methods, which
// take mu, so no caller has to remember to order them. Pion does not
// order them itself: a RemoveTrack landing while an answer starts the
// negotiated senders fails that answer half-way, and the senders after
// the removed one never start.
//
// Each Subscription on the connection is one outgoing stream (its
// downTrack, with its own SSRC and sequence numbers) whose source is one
// layer of a Publication at a time: the Subscription switches layer at a
// keyframe and rewrites SSRC, sequence numbers, timestamps and VP8
// picture IDs so the subscriber sees one stream (see Subscription).
// Which layer each subscription gets is capped twice, and this is where
// the next waves plug in (DESIGN.md, "Media that adapts"):
//   - the subscriber's own request, Subscription.SetMaxLayer, Pause and
//     Resume: edge calls them for the protocol's quality and pause
//     messages, and for adaptive stream (the smallest layer covering each
//     video element's rendered size; invisible ones paused);
//   - the connection's bandwidth, Subscription.SetAllocatedLayer: the
//     SubscriberConn owns the send-side estimate (bandwidth, in
//     allocator.go: transport-wide feedback arrives per connection,
//     through its rtcpRouter) and sets each subscription's allocated
//     layer, -1 to pause what does not fit (audio never), raising them
//     again as it probes up (probe.go);
//   - dynacast, per publication: the highest MaxLayer among its
//     subscriptions says which layers the publisher must keep sending.
//
// Goroutines: none of its own. Its rtcpRouter, and with it the
// congestion control, runs on Pion's SRTCP reader; a probe's padding is
// paced by a timer (one time.AfterFunc at a time, only while probing),
// and so is the video the pacer holds (pacer.go: one timer, armed only
// while it holds packets).
type SubscriberConn struct {
	pc     *webrtc.PeerConnection
	router *rtcpRouter
	bw     *bandwidth    // congestion control (allocator.go)
	direct *directWriter // RTP to the socket without Pion's layers (directwrite.go)

	// mu is held around every change to pc's descriptions, candidates and
	// senders: Offer, Answer, AddCandidate, and AddTrack and RemoveTrack
	// (Subscribe, Subscription.Close, a publication's end). It orders
	// them; it guards no field of SubscriberConn.
	mu sync.Mutex
}

// NewSubscriberConn makes a subscriber connection on the engine's muxes
// and codecs. Its one interceptor is its own write path to the socket
// (directWriter), which also sends its sender reports, and
// the subscriber's NACKs and keyframe requests reach its Subscriptions
// without a goroutine per track (see rtcpRouter), so nothing is left to
// read from its senders: their Read and ReadRTCP wait until the sender
// stops. The caller owns it and closes it.
func (e *Engine) NewSubscriberConn(c webrtc.Configuration) (*SubscriberConn, error) {
	router := newRTCPRouter()
	bw := newBandwidth(e.metrics, e.log)
	router.twcc = bw.onRTCP
	direct := newDirectWriter(e.udpConn, router, e.log)
	pc, err := newPeerConnection(e.newSubscriberAPI(router, direct), c, "subscriber")
	if err != nil {
		return nil, err
	}
	direct.watch(pc)
	return &SubscriberConn{pc: pc, router: router, bw: bw, direct: direct}, nil
}

// OnSubscriptionState sets the function told each time the bandwidth
// allocation changes a subscription: paused for congestion, resumed, or
// capped at another layer. It is called on the connection's feedback
// goroutine and must not block.
func (c *SubscriberConn) OnSubscriptionState(f func(SubscriptionState)) { c.bw.setOnState(f) }

// Estimate is the connection's send-side bandwidth estimate in bit/s, 0
// until the subscriber's feedback has measured one.
func (c *SubscriberConn) Estimate() float64 { return c.bw.Estimate() }

// PeerConnection is the connection itself, for its callbacks
// (OnICECandidate, OnConnectionStateChange) and its state. Change it only
// through the SubscriberConn's methods. OnICEConnectionStateChange and
// the ICE transport's OnSelectedCandidatePairChange are the
// SubscriberConn's own (its direct write path follows them).
func (c *SubscriberConn) PeerConnection() *webrtc.PeerConnection { return c.pc }

// Offer creates an offer covering every subscription made so far, sets it
// as the local description and returns it.
func (c *SubscriberConn) Offer() (webrtc.SessionDescription, error) {
	return c.offer(nil)
}

// RestartOffer is Offer with new ICE credentials: the subscriber's
// network changed, and its answer restarts ICE on both ends.
func (c *SubscriberConn) RestartOffer() (webrtc.SessionDescription, error) {
	return c.offer(&webrtc.OfferOptions{ICERestart: true})
}

func (c *SubscriberConn) offer(opts *webrtc.OfferOptions) (webrtc.SessionDescription, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	offer, err := c.pc.CreateOffer(opts)
	if err != nil {
		return offer, fmt.Errorf("sfu: subscriber offer: %w", err)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return offer, fmt.Errorf("sfu: subscriber offer: %w", err)
	}
	return offer, nil
}

// Answer applies the subscriber's answer to the outstanding offer; Pion
// then binds and starts the negotiated senders.
func (c *SubscriberConn) Answer(answer webrtc.SessionDescription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.pc.SetRemoteDescription(answer); err != nil {
		return fmt.Errorf("sfu: subscriber answer: %w", err)
	}
	c.direct.setCryptex(sendsCryptex(answer))
	return nil
}

// AddCandidate adds one of the subscriber's ICE candidates. The
// connection must have the subscriber's answer.
func (c *SubscriberConn) AddCandidate(ci webrtc.ICECandidateInit) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pc.AddICECandidate(ci)
}

// Subscribe adds p's track to the connection (the caller renegotiates with
// Offer; the offer carries every codec the engine has, so that tracks in
// other codecs can follow on the same connection, and the track's Bind
// picks the publication's) and asks the publisher for a keyframe as soon
// as the track is bound, so a late joiner's video starts at once.
func (c *SubscriberConn) Subscribe(p *Publication) (*Subscription, error) {
	return p.subscribe(c)
}

// errNotOnConn: Unsubscribe was given another connection's subscription.
var errNotOnConn = errors.New("sfu: unsubscribe: the subscription is on another connection")

// Unsubscribe stops forwarding sub and removes its track from the
// connection (the caller renegotiates): sub.Close, for a subscription of
// this connection.
func (c *SubscriberConn) Unsubscribe(sub *Subscription) error {
	if sub.conn != c {
		return errNotOnConn
	}
	return sub.Close()
}

// addTrack adds t to the connection, ordered against negotiation.
func (c *SubscriberConn) addTrack(t webrtc.TrackLocal) (*webrtc.RTPSender, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pc.AddTrack(t)
}

// removeTrack removes sender from the connection, ordered against
// negotiation. A connection already closed is not an error. When
// RemoveTrack fails before stopping the sender it stops it, so nothing
// keeps reading the sender's RTCP.
func (c *SubscriberConn) removeTrack(sender *webrtc.RTPSender) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.pc.RemoveTrack(sender)
	if err == nil || errors.Is(err, webrtc.ErrConnectionClosed) {
		return nil
	}
	_ = sender.Stop()
	return err
}

// Close closes the PeerConnection; every sender stops. Close the
// subscriptions first, or let their publications end them.
func (c *SubscriberConn) Close() error {
	c.bw.close()
	c.direct.closeTap()
	return c.pc.Close()
}
