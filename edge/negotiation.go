package edge

import (
	"errors"
	"fmt"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// maxOfferSections bounds the media sections (m-lines) of a publisher
// offer, sending or not. Every section becomes a transceiver on the
// server, and a recvonly or inactive one escapes the track limit, so
// without this bound one 64 KiB offer of about 450 bare sections costs
// the server a megabyte and a large fraction of a CPU second to answer,
// ten times in a burst. A browser needs one section per track it ever
// published (stopped ones are recycled); 64 leaves room for a long
// session of toggled screen shares.
const maxOfferSections = 64

// handleOffer answers the client's publisher offer, after the rate limit
// and the grant, track and candidate checks. The answer, or the error
// refusing the offer (with target publisher), echoes its id.
func (s *Session) handleOffer(offerSDP string, id uint64) {
	s.pubOfferID.Store(id)
	if !s.offers.Allow() {
		s.sendErrorOn(signal.TargetPublisher, signal.CodeRateLimited, "too many offers; wait before renegotiating")
		return
	}
	offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}
	parsed, err := offer.Unmarshal()
	if err != nil {
		s.sendErrorOn(signal.TargetPublisher, signal.CodeInvalidSDP, "offer does not parse")
		return
	}
	s.noteRestart(parsed)
	if !s.admitOffer(parsed) {
		return
	}
	answer, err := s.answer(offer, parsed)
	if err != nil {
		s.log.Info("offer_refused", "err", err)
		s.sendErrorOn(signal.TargetPublisher, signal.CodeInvalidSDP, "offer cannot be applied")
		s.endIfStuck()
		return
	}
	s.send(&signal.Message{Type: signal.TypeAnswer, Target: signal.TargetPublisher, SDP: answer, OfferID: id})
	s.pubICE.Open()
}

// admitOffer runs the section, grant, track, shape and candidate checks
// on a parsed publisher offer; it answers a refusal itself and reports
// whether the offer may be applied.
func (s *Session) admitOffer(parsed *sdp.SessionDescription) bool {
	refuse := func(code, msg string) bool {
		s.sendErrorOn(signal.TargetPublisher, code, msg)
		return false
	}
	if len(parsed.MediaDescriptions) > maxOfferSections {
		return refuse(signal.CodeTrackLimit, fmt.Sprintf("at most %d media sections per offer", maxOfferSections))
	}
	if n := sendingTracks(parsed); n > 0 && !s.grants.Publish {
		return refuse(signal.CodeNotPermitted, "the token does not grant publish")
	} else if n > s.deps.cfg.MaxTracks {
		return refuse(signal.CodeTrackLimit, fmt.Sprintf("at most %d tracks per participant", s.deps.cfg.MaxTracks))
	}
	if err := checkOffer(parsed); err != nil {
		return refuse(signal.CodeInvalidSDP, err.Error())
	}
	return s.takeCandidates(signal.TargetPublisher, sdpCandidates(parsed))
}

// reasonNegotiationFailed closes a session whose publisher or subscriber
// connection was left half-negotiated by a description that failed inside
// Pion.
const reasonNegotiationFailed = "negotiation_failed"

// checkOffer refuses, before Pion sees it, an offer that Pion would
// refuse only after moving the connection to have-remote-offer: Pion
// cannot roll a remote offer back, so such an offer would leave the
// publisher connection unable to negotiate again.
func checkOffer(d *sdp.SessionDescription) error {
	has := func(key string) bool {
		if _, ok := d.Attribute(key); ok {
			return true
		}
		for _, m := range d.MediaDescriptions {
			if _, ok := m.Attribute(key); ok {
				return true
			}
		}
		return false
	}
	for _, key := range []string{"ice-ufrag", "ice-pwd", "fingerprint"} {
		if !has(key) {
			return fmt.Errorf("offer has no %s", key)
		}
	}
	for _, m := range d.MediaDescriptions {
		if _, ok := m.Attribute("mid"); !ok {
			return errors.New("offer has a media section without a mid")
		}
	}
	return nil
}

// endIfStuck ends the session when a failed offer left the publisher
// connection in have-remote-offer, where it can never negotiate again:
// the client learns it must reconnect, instead of a session that refuses
// every later offer.
func (s *Session) endIfStuck() {
	if s.pub.SignalingState() == webrtc.SignalingStateHaveRemoteOffer {
		s.log.Info("publisher_negotiation_stuck")
		s.end(reasonNegotiationFailed)
	}
}

// answer applies offer to the publisher connection and returns the answer.
func (s *Session) answer(offer webrtc.SessionDescription, parsed *sdp.SessionDescription) (string, error) {
	if err := s.pub.SetRemoteDescription(offer); err != nil {
		return "", fmt.Errorf("edge: publisher offer: %w", err)
	}
	s.setRemoteUfrag(signal.TargetPublisher, parsed)
	s.addHeld(signal.TargetPublisher)
	s.noteDataOffer(parsed)
	answer, err := s.pub.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("edge: publisher answer: %w", err)
	}
	// An ICE restart gathers anew once the answer is set: its candidates
	// must follow the answer, which the caller sends before Open.
	s.pubICE.Hold()
	if err := s.pub.SetLocalDescription(answer); err != nil {
		s.pubICE.Open()
		return "", fmt.Errorf("edge: publisher answer: %w", err)
	}
	return answer.SDP, nil
}

// sendingTracks counts the offer's live audio and video m-lines the client
// sends on.
func sendingTracks(d *sdp.SessionDescription) int {
	n := 0
	for _, m := range d.MediaDescriptions {
		kind := m.MediaName.Media
		if (kind != "audio" && kind != "video") || m.MediaName.Port.Value == 0 {
			continue
		}
		_, recvonly := m.Attribute("recvonly")
		_, inactive := m.Attribute("inactive")
		if !recvonly && !inactive {
			n++
		}
	}
	return n
}

// handleAnswer applies the client's answer to the outstanding subscriber
// offer. An answer that names another offer (one answered already, as a
// resume may make a client answer an offer twice) is ignored: applied to
// the outstanding offer, it would set descriptions that do not match.
func (s *Session) handleAnswer(answerSDP string, id uint64) {
	if id != 0 && id != s.subOfferID.Load() {
		s.log.Debug("stale_answer_ignored", "offer_id", id)
		return
	}
	if s.sub.PeerConnection().SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		s.sendError(signal.CodeInvalidSDP, "no subscriber offer is outstanding")
		return
	}
	answer := webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP}
	parsed, err := answer.Unmarshal()
	if err != nil {
		s.sendError(signal.CodeInvalidSDP, "answer does not parse")
		return
	}
	if !s.takeCandidates(signal.TargetSubscriber, sdpCandidates(parsed)) {
		return
	}
	if err := s.sub.Answer(answer); err != nil {
		state := s.sub.PeerConnection().SignalingState()
		s.log.Info("answer_refused", "state", state.String(), "err", err)
		s.sendError(signal.CodeInvalidSDP, "answer cannot be applied")
		if state != webrtc.SignalingStateHaveLocalOffer {
			// Pion took the description and then failed, e.g. starting
			// a sender whose codec the answer does not accept: the
			// connection is half-negotiated and every later offer
			// fails. The client learns it must reconnect.
			s.end(reasonNegotiationFailed)
		}
		return // else nothing was applied: the offer still waits for an answer
	}
	s.setRemoteUfrag(signal.TargetSubscriber, parsed)
	s.addHeld(signal.TargetSubscriber)
	select {
	case s.answered <- struct{}{}:
	default:
	}
}

// requestOffer asks the negotiator for a subscriber offer. Requests made
// while one is outstanding fold into the next offer.
func (s *Session) requestOffer() {
	select {
	case s.renegotiate <- struct{}{}:
	default:
	}
}

// negotiateLoop is the negotiator goroutine: one subscriber offer at a
// time, each covering every change requested before it was made. An offer
// not answered within NegotiationTimeout ends the session: no later change
// could reach the client.
func (s *Session) negotiateLoop() {
	for {
		select {
		case <-s.renegotiate:
		case <-s.ending:
			return
		}
		select { // a resume before this offer needs no re-send of it
		case <-s.resume.reattached:
		default:
		}
		offer, epoch, err := s.offerSubscriber()
		if err != nil {
			s.log.Warn("subscriber_offer_failed", "err", err)
			s.end(reasonInternal)
			return
		}
		if !s.awaitAnswer(offer, epoch) {
			return
		}
	}
}

// awaitAnswer waits for the answer to offer, sent on the WebSocket of
// epoch. A resume meanwhile re-sends the offer if it went to a connection
// since lost (which may not have delivered it), and its wait starts
// again; while the session waits for a resume the timeout does not end it
// (the grace period does).
func (s *Session) awaitAnswer(offer *signal.Message, epoch uint64) bool {
	t := time.NewTimer(s.deps.cfg.NegotiationTimeout)
	defer t.Stop()
	for {
		select {
		case <-s.answered:
			return true
		case <-s.resume.reattached:
			// Unless it went to the new connection already, or the
			// answer came meanwhile (applied before answered is
			// signalled).
			if epoch != s.resumeEpoch() && s.sub.PeerConnection().SignalingState() == webrtc.SignalingStateHaveLocalOffer {
				epoch = s.sendEpoch(offer)
			}
			t.Reset(s.deps.cfg.NegotiationTimeout)
		case <-t.C:
			if s.resume.isDetached() {
				t.Reset(s.deps.cfg.NegotiationTimeout)
				continue
			}
			s.log.Info("subscriber_answer_timeout")
			s.end(signal.ReasonTimeout)
			return false
		case <-s.ending:
			return false
		}
	}
}

func (s *Session) offerSubscriber() (*signal.Message, uint64, error) {
	s.subICE.Hold() // a restart's new candidates follow its offer
	offer, err := s.subscriberOffer()
	if err != nil {
		s.subICE.Open()
		return nil, 0, err
	}
	m := &signal.Message{Type: signal.TypeOffer, Target: signal.TargetSubscriber, SDP: offer.SDP, OfferID: s.subOfferID.Add(1)}
	epoch := s.sendEpoch(m)
	s.subICE.Open()
	return m, epoch, nil
}
