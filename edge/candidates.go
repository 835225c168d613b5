package edge

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

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
	fits := len(s.candidates)+len(fresh) <= s.deps.cfg.MaxCandidates
	if fits {
		for _, k := range fresh {
			s.candidates[k] = struct{}{}
		}
	}
	s.mu.Unlock()
	if !fits {
		s.deps.metrics.candidateRefused("limit")
		s.sendError(signal.CodeCandidateLimit, fmt.Sprintf("at most %d ICE candidates per session, in descriptions or trickled", s.deps.cfg.MaxCandidates))
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
	if len(s.candidates) >= s.deps.cfg.MaxCandidates {
		s.mu.Unlock()
		s.deps.metrics.candidateRefused("limit")
		s.sendError(signal.CodeCandidateLimit, fmt.Sprintf("at most %d ICE candidates per session", s.deps.cfg.MaxCandidates))
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
		s.deps.metrics.candidateRefused("invalid")
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
