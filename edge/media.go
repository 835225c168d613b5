package edge

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/sfu"
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
// and the grant, track and candidate checks.
func (s *Session) handleOffer(offerSDP string) {
	if !s.offers.Allow() {
		s.sendError(signal.CodeRateLimited, "too many offers; wait before renegotiating")
		return
	}
	offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}
	parsed, err := offer.Unmarshal()
	if err != nil {
		s.sendError(signal.CodeInvalidSDP, "offer does not parse")
		return
	}
	if len(parsed.MediaDescriptions) > maxOfferSections {
		s.sendError(signal.CodeTrackLimit, fmt.Sprintf("at most %d media sections per offer", maxOfferSections))
		return
	}
	if n := sendingTracks(parsed); n > 0 && !s.grants.Publish {
		s.sendError(signal.CodeNotPermitted, "the token does not grant publish")
		return
	} else if n > s.srv.cfg.MaxTracks {
		s.sendError(signal.CodeTrackLimit, fmt.Sprintf("at most %d tracks per participant", s.srv.cfg.MaxTracks))
		return
	}
	if err := checkOffer(parsed); err != nil {
		s.sendError(signal.CodeInvalidSDP, err.Error())
		return
	}
	if !s.takeCandidates(signal.TargetPublisher, sdpCandidates(parsed)) {
		return
	}
	answer, err := s.answer(offer)
	if err != nil {
		s.log.Info("offer_refused", "err", err)
		s.sendError(signal.CodeInvalidSDP, "offer cannot be applied")
		s.endIfStuck()
		return
	}
	s.send(&signal.Message{Type: signal.TypeAnswer, Target: signal.TargetPublisher, SDP: answer})
	s.pubICE.Open()
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
func (s *Session) answer(offer webrtc.SessionDescription) (string, error) {
	if err := s.pub.SetRemoteDescription(offer); err != nil {
		return "", fmt.Errorf("edge: publisher offer: %w", err)
	}
	s.addHeld(signal.TargetPublisher)
	answer, err := s.pub.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("edge: publisher answer: %w", err)
	}
	if err := s.pub.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("edge: publisher answer: %w", err)
	}
	return answer.SDP, nil
}

// sdpCandidates returns the ICE candidates a description carries inline,
// session-level and per m-line.
func sdpCandidates(d *sdp.SessionDescription) []string {
	var out []string
	for _, a := range d.Attributes {
		if a.IsICECandidate() {
			out = append(out, a.Value)
		}
	}
	for _, m := range d.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.IsICECandidate() {
				out = append(out, a.Value)
			}
		}
	}
	return out
}

// candidateKey identifies a candidate of one connection, however it came:
// trickled ("candidate:..." form) or inline in a description (bare form).
// A hash, not the line, is kept so the set costs 8 bytes a candidate
// whatever a client sends.
func (s *Session) candidateKey(target, line string) uint64 {
	return maphash.String(s.candidateSeed, target+"\x00"+strings.TrimPrefix(line, "candidate:"))
}

// takeCandidates counts the candidates of target carried in a description
// against the session's bound, as if trickled. Only candidates the session
// has not seen count: every renegotiation repeats the ones already sent, and
// counting those again would cut a long call in a busy room off at the
// bound. When the new ones do not fit it refuses the description with
// candidate_limit and reports false.
func (s *Session) takeCandidates(target string, lines []string) bool {
	if len(lines) == 0 {
		return true
	}
	s.mu.Lock()
	fresh := make([]uint64, 0, len(lines))
	for _, l := range lines {
		if k := s.candidateKey(target, l); !s.seenCandidate(k, fresh) {
			fresh = append(fresh, k)
		}
	}
	fits := len(s.candidates)+len(fresh) <= s.srv.cfg.MaxCandidates
	if fits {
		for _, k := range fresh {
			s.candidates[k] = struct{}{}
		}
	}
	s.mu.Unlock()
	if !fits {
		s.srv.metrics.candidateRefused("limit")
		s.sendError(signal.CodeCandidateLimit, fmt.Sprintf("at most %d ICE candidates per session, in descriptions or trickled", s.srv.cfg.MaxCandidates))
	}
	return fits
}

// seenCandidate reports whether k is in the session's set or in pending.
// s.mu is held.
func (s *Session) seenCandidate(k uint64, pending []uint64) bool {
	if _, ok := s.candidates[k]; ok {
		return true
	}
	return slices.Contains(pending, k)
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
// offer.
func (s *Session) handleAnswer(answerSDP string) {
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
	s.addHeld(signal.TargetSubscriber)
	select {
	case s.answered <- struct{}{}:
	default:
	}
}

// handleCandidate counts the candidate against the session's bound, then
// adds it, or holds it while its connection has no remote description.
func (s *Session) handleCandidate(target string, c webrtc.ICECandidateInit) {
	if c.Candidate == "" {
		return // end of candidates
	}
	k := s.candidateKey(target, c.Candidate)
	s.mu.Lock()
	if _, dup := s.candidates[k]; dup {
		s.mu.Unlock()
		return // the ICE agent has it already
	}
	if len(s.candidates) >= s.srv.cfg.MaxCandidates {
		s.mu.Unlock()
		s.srv.metrics.candidateRefused("limit")
		s.sendError(signal.CodeCandidateLimit, fmt.Sprintf("at most %d ICE candidates per session", s.srv.cfg.MaxCandidates))
		return
	}
	s.candidates[k] = struct{}{}
	if !s.hasRemote(target) {
		s.held[target] = append(s.held[target], c)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.addCandidate(target, c)
}

// hasRemote reports whether target's connection has its remote
// description; until then its candidates are held.
func (s *Session) hasRemote(target string) bool {
	if target == signal.TargetPublisher {
		return s.pub.RemoteDescription() != nil
	}
	return s.sub.PeerConnection().RemoteDescription() != nil
}

// addCandidate adds c to target's connection; one that does not parse is
// refused with invalid_candidate.
func (s *Session) addCandidate(target string, c webrtc.ICECandidateInit) {
	var err error
	if target == signal.TargetPublisher {
		err = s.pub.AddICECandidate(c)
	} else {
		err = s.sub.AddCandidate(c)
	}
	if err != nil {
		s.srv.metrics.candidateRefused("invalid")
		s.sendError(signal.CodeInvalidCandidate, "candidate does not parse")
	}
}

// addHeld adds the candidates held for target once its connection has its
// remote description.
func (s *Session) addHeld(target string) {
	s.mu.Lock()
	held := s.held[target]
	delete(s.held, target)
	s.mu.Unlock()
	for _, c := range held {
		s.addCandidate(target, c)
	}
}

func (s *Session) candidateSender(target string) func(webrtc.ICECandidateInit) {
	return func(c webrtc.ICECandidateInit) {
		s.send(&signal.Message{Type: signal.TypeCandidate, Target: target, Candidate: &c})
	}
}

// onTrack publishes a track the client sends: it starts forwarding, tells
// the room and watches for the track's end.
func (s *Session) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	s.recordJoin("received")
	if !s.admitTrack() {
		return
	}
	p, err := s.srv.media.Publish(remote, recv, s.pub, s.id)
	if err != nil {
		s.wg.Done()
		s.log.Warn("publish_failed", "err", err)
		return
	}
	others, ok := s.room.addPublication(s, p)
	if !ok {
		s.wg.Done()
		p.Close()
		return
	}
	s.log.Debug("track_published", "publication", p.ID(), "kind", p.Kind().String())
	for _, o := range others {
		o.subscribe(p)
	}
	go s.watch(p)
}

// admitTrack reserves a watcher slot for one more publication, within the
// track limit; false when the session ended or is at the limit.
func (s *Session) admitTrack() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || !s.grants.Publish || s.published >= s.srv.cfg.MaxTracks {
		return false
	}
	s.published++
	s.wg.Add(1)
	return true
}

// watch waits for p's end (the client stopped sending it) and takes it
// out of the room. At the session's end teardown does that instead.
func (s *Session) watch(p *sfu.Publication) {
	defer s.wg.Done()
	select {
	case <-p.Done():
	case <-s.ending:
		return
	}
	others, ok := s.room.removePublication(p)
	p.Close()
	if ok {
		for _, o := range others {
			o.unsubscribe(p)
		}
	}
	s.mu.Lock()
	s.published--
	s.mu.Unlock()
}

// subscribe forwards p to this participant, if its grants allow, and
// schedules a subscriber offer.
func (s *Session) subscribe(p *sfu.Publication) {
	if !s.grants.Subscribe {
		return
	}
	s.mu.Lock()
	if s.ended || s.subs[p.ID()] != nil {
		s.mu.Unlock()
		return
	}
	sub, err := s.sub.Subscribe(p)
	if err != nil {
		s.mu.Unlock()
		s.log.Debug("subscribe_failed", "publication", p.ID(), "err", err)
		return
	}
	s.subs[p.ID()] = sub
	if !s.joinTimed.Load() {
		s.wg.Add(1) // under s.mu with s.ended false: teardown has not begun waiting
		go s.timeJoin(sub)
	}
	s.mu.Unlock()
	s.requestOffer()
}

// timeJoin records the join time when the first packet is forwarded to
// this participant on sub: the moment a user sees or hears the room. It
// runs for the participant's first subscriptions only, and ends with the
// subscription or the session.
func (s *Session) timeJoin(sub *sfu.Subscription) {
	defer s.wg.Done()
	select {
	case <-sub.FirstPacket():
		s.recordJoin("forwarded")
	case <-sub.Done():
	case <-s.ending:
	}
}

// unsubscribe stops forwarding ps to this participant and schedules a
// subscriber offer.
func (s *Session) unsubscribe(ps ...*sfu.Publication) {
	s.mu.Lock()
	var gone []*sfu.Subscription
	for _, p := range ps {
		if sub := s.subs[p.ID()]; sub != nil {
			gone = append(gone, sub)
			delete(s.subs, p.ID())
		}
	}
	s.mu.Unlock()
	for _, sub := range gone {
		if err := sub.Close(); err != nil {
			s.log.Debug("unsubscribe_failed", "err", err)
		}
	}
	if len(gone) > 0 {
		s.requestOffer()
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
		if err := s.offerSubscriber(); err != nil {
			s.log.Warn("subscriber_offer_failed", "err", err)
			s.end(reasonInternal)
			return
		}
		t := time.NewTimer(s.srv.cfg.NegotiationTimeout)
		select {
		case <-s.answered:
			t.Stop()
		case <-t.C:
			s.log.Info("subscriber_answer_timeout")
			s.end(signal.ReasonTimeout)
			return
		case <-s.ending:
			t.Stop()
			return
		}
	}
}

func (s *Session) offerSubscriber() error {
	offer, err := s.sub.Offer()
	if err != nil {
		return err
	}
	s.send(&signal.Message{Type: signal.TypeOffer, Target: signal.TargetSubscriber, SDP: offer.SDP})
	s.subICE.Open()
	return nil
}
