package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// NewAPI builds a webrtc.API as a browser would have it: Pion's default
// codecs and interceptors (NACK, RTCP reports, TWCC), the audio level
// header extension, mDNS off, loopback
// candidates included. configure, when not nil, adjusts the settings
// further (LoopbackOnly, a port range, network types).
func NewAPI(configure func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	return newAPI(configure, false)
}

func newAPI(configure func(*webrtc.SettingEngine), simulcast bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("client: register codecs: %w", err)
	}
	if simulcast {
		if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
			return nil, fmt.Errorf("client: register simulcast extensions: %w", err)
		}
	}
	// Browsers offer audio levels; so does the client (see AudioLevelID).
	level := webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}
	if err := m.RegisterHeaderExtension(level, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("client: register audio level extension: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("client: register interceptors: %w", err)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	if configure != nil {
		configure(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// LoopbackOnly restricts ICE to loopback addresses over UDP: for tests,
// which must not send anything off the machine.
func LoopbackOnly(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
}

// setupPeers makes the publisher and subscriber PeerConnections with the
// ICE servers from `joined` (or Options.ICEServers).
func (c *Client) setupPeers() error {
	cfg := webrtc.Configuration{
		ICEServers: c.opts.ICEServers, ICETransportPolicy: c.opts.ICETransportPolicy,
		RTPHeaderEncryptionPolicy: c.opts.RTPHeaderEncryption,
	}
	if cfg.ICEServers == nil {
		for _, s := range c.joined.ICEServers {
			cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
		}
	}
	var err error
	if c.pub, err = c.opts.API.NewPeerConnection(cfg); err != nil {
		return fmt.Errorf("client: publisher connection: %w", err)
	}
	if c.sub, err = c.opts.API.NewPeerConnection(cfg); err != nil {
		return fmt.Errorf("client: subscriber connection: %w", err)
	}
	c.pubICE = signal.NewTrickle(c.candidateSender(signal.TargetPublisher))
	c.subICE = signal.NewTrickle(c.candidateSender(signal.TargetSubscriber))
	c.pub.OnICECandidate(c.pubICE.Candidate)
	c.sub.OnICECandidate(c.subICE.Candidate)
	c.sub.OnTrack(c.onTrack)
	c.watchICE(signal.TargetPublisher, c.pub)
	c.watchICE(signal.TargetSubscriber, c.sub)
	return nil
}

func (c *Client) candidateSender(target string) func(webrtc.ICECandidateInit) {
	return func(init webrtc.ICECandidateInit) {
		if err := c.Send(&signal.Message{Type: signal.TypeCandidate, Target: target, Candidate: &init}); err != nil {
			c.log.Debug("candidate_send_failed", "target", target, "err", err)
		}
	}
}

// Publisher is the publisher PeerConnection, for callers that need more
// than Publish (stats, transceivers).
func (c *Client) Publisher() *webrtc.PeerConnection { return c.pub }

// awaitHandover waits, for at most limit or until ctx ends, until this
// new participant can stand in for old: its publisher connection is up
// when it sends anything, and it receives as many tracks as old does over
// a connected subscriber connection (the room's others have reached this
// instance and their media flows here). It polls rather than set
// OnConnectionStateChange, which belongs to the caller.
func (c *Client) awaitHandover(ctx context.Context, old *Client, limit time.Duration) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	end := time.NewTimer(limit)
	defer end.Stop()
	for !c.standsInFor(old) {
		select {
		case <-tick.C:
		case <-end.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// standsInFor reports whether c publishes and receives what old does.
func (c *Client) standsInFor(old *Client) bool {
	if len(c.pub.GetSenders()) > 0 && !past(c.pub.ConnectionState()) {
		return false
	}
	want := old.receiving()
	return want == 0 || c.sub.ConnectionState() == webrtc.PeerConnectionStateConnected && c.receiving() >= want
}

// receiving counts the tracks the subscriber connection receives now.
func (c *Client) receiving() int {
	if c.sub.ConnectionState() != webrtc.PeerConnectionStateConnected {
		return 0
	}
	n := 0
	for _, tr := range c.sub.GetTransceivers() {
		if d := tr.Direction(); d != webrtc.RTPTransceiverDirectionRecvonly && d != webrtc.RTPTransceiverDirectionSendrecv {
			continue
		}
		if r := tr.Receiver(); r != nil && r.Track() != nil {
			n++
		}
	}
	return n
}

// past reports whether a connection is past connecting: up, or failed.
func past(st webrtc.PeerConnectionState) bool {
	return st != webrtc.PeerConnectionStateNew && st != webrtc.PeerConnectionStateConnecting
}

// Subscriber is the subscriber PeerConnection.
func (c *Client) Subscriber() *webrtc.PeerConnection { return c.sub }

func (c *Client) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	rt := &RemoteTrack{ParticipantID: t.StreamID(), Track: t, Receiver: r}
	if c.opts.OnTrack != nil {
		c.opts.OnTrack(rt)
		return
	}
	select {
	case c.tracks <- rt:
	case <-c.done:
	}
}

// Publish adds tracks to the publisher connection (send only) and
// negotiates it: it returns once the server's answer is applied. The
// caller writes RTP to the tracks (see NewAudioTrack, NewVideoTrack). A
// refusal from the server (not_permitted, track_limit, rate_limited,
// invalid_sdp) is a *signal.Error.
func (c *Client) Publish(ctx context.Context, tracks ...webrtc.TrackLocal) ([]*webrtc.RTPSender, error) {
	c.negotiateMu.Lock()
	defer c.negotiateMu.Unlock()
	senders := make([]*webrtc.RTPSender, 0, len(tracks))
	for _, t := range tracks {
		// In one step against Close: a sender added after it would never
		// stop, nor its drainRTCP, and Close would wait for that forever.
		err := c.peers.do(func() error {
			tr, err := c.pub.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				return err
			}
			senders = append(senders, tr.Sender())
			c.wg.Add(1)
			go c.drainRTCP(tr.Sender())
			return nil
		})
		if err != nil {
			return senders, fmt.Errorf("client: publish %s: %w", t.ID(), err)
		}
	}
	return senders, c.negotiate(ctx)
}

// Unpublish removes a published track and renegotiates.
func (c *Client) Unpublish(ctx context.Context, sender *webrtc.RTPSender) error {
	c.negotiateMu.Lock()
	defer c.negotiateMu.Unlock()
	if err := c.pub.RemoveTrack(sender); err != nil {
		return fmt.Errorf("client: unpublish: %w", err)
	}
	return c.negotiate(ctx)
}

// drainRTCP reads a sender's RTCP so the interceptors (NACK responder,
// reports) see it; it ends when the sender stops.
func (c *Client) drainRTCP(s *webrtc.RTPSender) {
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// negotiate sends a publisher offer and applies the answer. The caller
// holds negotiateMu.
func (c *Client) negotiate(ctx context.Context) error {
	return c.negotiateWith(ctx, nil)
}

// negotiateWith is negotiate with offer options (an ICE restart).
func (c *Client) negotiateWith(ctx context.Context, opts *webrtc.OfferOptions) error {
	if opts != nil && opts.ICERestart {
		c.pubICE.Hold() // the new generation's candidates follow the offer
	}
	var offer webrtc.SessionDescription
	err := c.peers.do(func() error {
		var err error
		if offer, err = c.pub.CreateOffer(opts); err != nil {
			return err
		}
		return c.pub.SetLocalDescription(offer)
	})
	if err != nil {
		return fmt.Errorf("client: publisher offer: %w", err)
	}
	select { // drop a late reply to an earlier, abandoned negotiation
	case <-c.answers:
	default:
	}
	c.offerSeq++
	id := c.offerSeq
	if err := c.Send(&signal.Message{Type: signal.TypeOffer, Target: signal.TargetPublisher, SDP: c.declareSizes(offer.SDP), Sources: c.offerSources(), OfferID: id}); err != nil {
		return err
	}
	c.pubICE.Open()
	for {
		select {
		case m := <-c.answers:
			if m.OfferID != 0 && m.OfferID != id {
				continue // the reply to an offer given up on (its 10 s passed): not this offer's
			}
			return c.applyAnswer(m)
		case <-c.done:
			return errors.New("client: publisher offer: connection closed")
		case <-ctx.Done():
			return fmt.Errorf("client: publisher offer: %w", ctx.Err())
		}
	}
}

func (c *Client) applyAnswer(m *signal.Message) error {
	if m.Type == signal.TypeError {
		_ = c.peers.do(func() error {
			return c.pub.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
		})
		return &signal.Error{Code: m.Code, Message: m.Message}
	}
	return c.peers.do(func() error {
		if err := c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			return fmt.Errorf("client: publisher answer: %w", err)
		}
		c.flushCandidates(signal.TargetPublisher, c.pub)
		return nil
	})
}

// NewAudioTrack returns an Opus track to publish; the caller writes RTP
// to it. id is the track id; the stream id is this participant's, but the
// server re-labels forwarded tracks with its own ids anyway.
func NewAudioTrack(id string) (*webrtc.TrackLocalStaticRTP, error) {
	return newTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, id)
}

// NewVideoTrack returns a VP8 track to publish; the caller writes RTP.
func NewVideoTrack(id string) (*webrtc.TrackLocalStaticRTP, error) {
	return newTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, id)
}

func newTrack(c webrtc.RTPCodecCapability, id string) (*webrtc.TrackLocalStaticRTP, error) {
	t, err := webrtc.NewTrackLocalStaticRTP(c, id, "local")
	if err != nil {
		return nil, fmt.Errorf("client: new %s track: %w", c.MimeType, err)
	}
	return t, nil
}
