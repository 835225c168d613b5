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

// maxCandidateGenerations bounds the candidates a session may send over
// its whole life to this many times MaxCandidates. The cap of
// MaxCandidates counts per ICE generation: an ICE restart (a network
// change) starts the restarted connection's count again, since its old
// candidates are dead and a phone that changes networks ten times in a
// call must not be cut off. The session-wide bound keeps restarts from
// being a way around the cap: restarts are rate-limited like offers, and
// the candidates of all generations together stop at this bound. A
// restart brings a few candidates (a host, a reflexive, a relay), so 10
// generations' worth is hundreds of real network changes.
const maxCandidateGenerations = 10

func newCandidateSets() map[string]map[uint64]struct{} {
	return map[string]map[uint64]struct{}{
		signal.TargetPublisher: {}, signal.TargetSubscriber: {},
	}
}

// newCandidateGeneration forgets the candidates of target's previous ICE
// generation: its connection restarted ICE.
func (s *Session) newCandidateGeneration(target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.candidates[target] = map[uint64]struct{}{}
}

// setRemoteUfrag records the ICE username fragment of target's remote
// description, just applied.
func (s *Session) setRemoteUfrag(target string, d *sdp.SessionDescription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remoteUfrag[target] = signal.ICEUfrag(d)
}

// aheadOfDescription reports whether c belongs to an ICE generation the
// connection's remote description does not have yet: a restarting
// client's candidate that overtook its offer or answer. s.mu is held.
func (s *Session) aheadOfDescription(target string, c webrtc.ICECandidateInit) bool {
	return c.UsernameFragment != nil && *c.UsernameFragment != "" && *c.UsernameFragment != s.remoteUfrag[target]
}

// candidateRoom reports whether n more candidates fit both bounds: the
// current generations' MaxCandidates and the session's lifetime bound. s.mu
// is held.
func (s *Session) candidateRoom(n int) bool {
	now := len(s.candidates[signal.TargetPublisher]) + len(s.candidates[signal.TargetSubscriber])
	return now+n <= s.deps.cfg.MaxCandidates && s.candidatesAll+n <= s.deps.cfg.MaxCandidates*maxCandidateGenerations
}

// refuseCandidates answers candidates that do not fit. described is the
// connection whose offer or answer carried them, refused whole with them,
// or "" for a trickled one: the error names that connection, so that a
// client waiting for the answer to its offer fails at once with this
// reason instead of waiting for an answer that will not come.
func (s *Session) refuseCandidates(described string) {
	s.deps.metrics.candidateRefused("limit")
	s.sendErrorOn(described, signal.CodeCandidateLimit, fmt.Sprintf("at most %d ICE candidates per session and ICE generation (%d over the session), in descriptions or trickled",
		s.deps.cfg.MaxCandidates, s.deps.cfg.MaxCandidates*maxCandidateGenerations))
}

// takeCandidates counts the candidates of target carried in a description
// against the session's bounds, as if trickled. Only candidates the session
// has not seen in this generation count: every renegotiation repeats the
// ones already sent, and counting those again would cut a long call in a
// busy room off at the bound. When the new ones do not fit it refuses the
// description with candidate_limit and reports false.
func (s *Session) takeCandidates(target string, lines []string) bool {
	if len(lines) == 0 {
		return true
	}
	s.mu.Lock()
	set := s.candidates[target]
	fresh := make([]uint64, 0, len(lines))
	for _, l := range lines {
		k := s.candidateKey(target, l)
		if _, seen := set[k]; !seen && !slices.Contains(fresh, k) {
			fresh = append(fresh, k)
		}
	}
	fits := s.candidateRoom(len(fresh))
	if fits {
		for _, k := range fresh {
			set[k] = struct{}{}
		}
		s.candidatesAll += len(fresh)
	}
	s.mu.Unlock()
	if !fits {
		s.refuseCandidates(target)
	}
	return fits
}

// handleCandidate counts the candidate against the session's bound, then
// adds it, or holds it while its connection has no remote description.
func (s *Session) handleCandidate(target string, c webrtc.ICECandidateInit) {
	if c.Candidate == "" {
		return // end of candidates
	}
	k := s.candidateKey(target, c.Candidate)
	s.mu.Lock()
	if _, dup := s.candidates[target][k]; dup {
		s.mu.Unlock()
		return // the ICE agent has it already
	}
	if !s.candidateRoom(1) {
		s.mu.Unlock()
		s.refuseCandidates("")
		return
	}
	s.candidates[target][k] = struct{}{}
	s.candidatesAll++
	if !s.hasRemote(target) || s.aheadOfDescription(target, c) {
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
