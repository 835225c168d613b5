package edge

import (
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// ICE restarts. The client restarts ICE when a connection goes
// disconnected or failed (its network changed): the publisher connection
// with an offer of new ICE credentials, which Pion's answer follows; the
// subscriber connection by asking with ice_restart, answered by a
// subscriber offer with new credentials. Either starts a new candidate
// generation on that connection (see maxCandidateGenerations), and both
// keep every publication and subscription: only the transport changes.

// handleICERestart asks the negotiator for a subscriber offer with new
// ICE credentials. Requests are paced as publisher offers are: each costs
// a negotiation.
func (s *Session) handleICERestart() {
	if !s.resume.restarts.Allow() {
		s.sendError(signal.CodeRateLimited, "too many ICE restarts; wait before asking again")
		return
	}
	s.resume.mu.Lock()
	s.resume.restartSub = true
	s.resume.mu.Unlock()
	s.requestOffer()
}

// subscriberOffer makes the next subscriber offer, restarting ICE when it
// was asked for since the last one.
func (s *Session) subscriberOffer() (webrtc.SessionDescription, error) {
	s.resume.mu.Lock()
	restart := s.resume.restartSub
	s.resume.restartSub = false
	s.resume.mu.Unlock()
	if !restart {
		return s.sub.Offer()
	}
	s.newCandidateGeneration(signal.TargetSubscriber)
	s.deps.metrics.iceRestart(signal.TargetSubscriber)
	s.log.Info("ice_restart", "target", signal.TargetSubscriber)
	return s.sub.RestartOffer()
}

// noteRestart starts a new candidate generation on the publisher
// connection when offer restarts ICE: its ICE credentials differ from the
// current remote description's. That one's are the ufrag recorded when it
// was applied: parsing the description Pion holds would write the parse
// it caches inside, under Pion's goroutines reading it.
func (s *Session) noteRestart(offer *sdp.SessionDescription) {
	s.mu.Lock()
	cur := s.remoteUfrag[signal.TargetPublisher]
	s.mu.Unlock()
	if cur == "" || cur == signal.ICEUfrag(offer) {
		return
	}
	s.newCandidateGeneration(signal.TargetPublisher)
	s.deps.metrics.iceRestart(signal.TargetPublisher)
	s.log.Info("ice_restart", "target", signal.TargetPublisher)
}
