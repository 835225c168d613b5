package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// requestErrors are the `error` codes that answer a publisher offer
// rather than some other message: they fail the Publish that is waiting.
var requestErrors = map[string]bool{
	signal.CodeInvalidSDP: true, signal.CodeTrackLimit: true,
	signal.CodeNotPermitted: true, signal.CodeRateLimited: true,
}

// refusesOffer reports whether m is a candidate_limit refusing the
// publisher offer itself (the candidates it carried did not fit), not a
// trickled candidate: the waiting offer, an ICE restart's at the
// session's bound, fails at once with it.
func refusesOffer(m *signal.Message) bool {
	return m.Code == signal.CodeCandidateLimit && m.Target == signal.TargetPublisher
}

// readLoop is the only reader of the WebSocket. It handles offers,
// answers and candidates itself and hands everything else to the events.
func (c *Client) readLoop() {
	defer c.wg.Done()
	defer close(c.events)
	defer close(c.done)
	for {
		_, data, err := c.conn.ReadMessage() // c.conn changes only on this goroutine
		if err != nil {
			if err = c.resumeAfter(err); err == nil {
				continue
			}
			c.endMu.Lock()
			c.closeErr = err
			c.endMu.Unlock()
			return
		}
		m, err := signal.Parse(data)
		if err != nil {
			c.log.Debug("bad_server_message", "err", err)
			continue
		}
		if err := c.handle(m); err != nil {
			c.log.Debug("server_message_failed", "type", m.Type, "err", err)
		}
	}
}

func (c *Client) handle(m *signal.Message) error {
	switch m.Type {
	case signal.TypeOffer:
		return c.handleOffer(m)
	case signal.TypeAnswer:
		c.deliverReply(m)
		return nil
	case signal.TypeCandidate:
		return c.handleCandidate(m)
	case signal.TypeLeave:
		c.endMu.Lock()
		c.leaveReason = m.Reason
		c.endMu.Unlock()
	case signal.TypeLayers:
		c.applyLayers(m)
	case signal.TypeSpeakers:
		c.applySpeakers(m)
	case signal.TypeTrackPublished, signal.TypeTrackMuted, signal.TypeTrackUnpublished:
		c.noteOwnMute(m)
	case signal.TypeResumed:
		c.setResume(m)
	case signal.TypeError:
		if requestErrors[m.Code] || refusesOffer(m) {
			c.deliverReply(m)
		}
	}
	c.emit(m)
	return nil
}

// deliverReply hands an answer (or a refusal) to the waiting Publish.
// Without one waiting it replaces an unread earlier reply.
func (c *Client) deliverReply(m *signal.Message) {
	for {
		select {
		case c.answers <- m:
			return
		default:
		}
		select {
		case <-c.answers:
		default:
		}
	}
}

func (c *Client) emit(m *signal.Message) {
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(m)
		return
	}
	select {
	case c.events <- m:
	default:
		c.dropped.Add(1)
	}
}

// handleOffer answers a subscriber offer.
func (c *Client) handleOffer(m *signal.Message) error {
	if m.Target != signal.TargetSubscriber {
		return fmt.Errorf("client: offer for %q", m.Target)
	}
	prev := c.sub.RemoteDescription()
	answer, err := c.answerSubscriber(m.SDP)
	defer c.noteSubscriberRestart(prev)
	if err != nil {
		return err
	}
	if err := c.Send(&signal.Message{Type: signal.TypeAnswer, Target: signal.TargetSubscriber, SDP: answer.SDP, OfferID: m.OfferID}); err != nil {
		return err
	}
	c.subICE.Open()
	return nil
}

// noteSubscriberRestart tells a waiting restartSubscriber that the
// subscriber offer just answered restarted ICE: its ufrag is not prev's.
func (c *Client) noteSubscriberRestart(prev *webrtc.SessionDescription) {
	if prev == nil || c.sub.SignalingState() != webrtc.SignalingStateStable {
		return
	}
	if signal.DescriptionUfrag(prev) == signal.DescriptionUfrag(c.sub.RemoteDescription()) {
		return
	}
	select {
	case c.subRestarted <- struct{}{}:
	default:
	}
}

// answerSubscriber applies a subscriber offer and sets and returns the
// answer, in one step against Close (see peerGuard). The subscriber's
// candidates are held from then on: an ICE restart's new ones must follow
// the answer, which the caller sends before it opens them.
func (c *Client) answerSubscriber(sdp string) (answer webrtc.SessionDescription, err error) {
	err = c.peers.do(func() error {
		if err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
			return fmt.Errorf("client: subscriber offer: %w", err)
		}
		c.flushCandidates(signal.TargetSubscriber, c.sub)
		if answer, err = c.sub.CreateAnswer(nil); err != nil {
			return fmt.Errorf("client: subscriber answer: %w", err)
		}
		c.subICE.Hold()
		if err := c.sub.SetLocalDescription(answer); err != nil {
			c.subICE.Open()
			return fmt.Errorf("client: subscriber answer: %w", err)
		}
		return nil
	})
	return answer, err
}

// handleCandidate adds a server candidate, or holds it until the
// connection has the server's description of the candidate's ICE
// generation. After a publisher ICE restart the server's answer is applied
// on the negotiating goroutine while this reader goes on to the server's
// new candidates, which follow the answer: added to the connection before
// the answer, Pion would drop them (their ufrag is not the old
// description's), and the restarted agent would have nothing to check.
func (c *Client) handleCandidate(m *signal.Message) error {
	if m.Candidate == nil || m.Candidate.Candidate == "" {
		return nil
	}
	pc := c.peer(m.Target)
	if pc == nil {
		return fmt.Errorf("client: candidate for %q", m.Target)
	}
	return c.peers.do(func() error {
		c.remoteCandidates.Lock()
		defer c.remoteCandidates.Unlock()
		if d := pc.RemoteDescription(); d == nil || aheadOf(d, *m.Candidate) {
			c.pending[m.Target] = append(c.pending[m.Target], *m.Candidate)
			return nil
		}
		return pc.AddICECandidate(*m.Candidate)
	})
}

// aheadOf reports whether cand names an ICE generation (its ufrag) other
// than d's: one whose description has not been applied yet. A candidate
// without a ufrag, or one that does not parse, is not held: Pion judges it.
func aheadOf(d *webrtc.SessionDescription, cand webrtc.ICECandidateInit) bool {
	ufrag := candidateUfrag(cand)
	if ufrag == "" {
		return false
	}
	return signal.DescriptionUfrag(d) != ufrag
}

// candidateUfrag is the ICE username fragment cand belongs to: its
// usernameFragment, or the ufrag extension of its line (Pion's form).
func candidateUfrag(cand webrtc.ICECandidateInit) string {
	if cand.UsernameFragment != nil && *cand.UsernameFragment != "" {
		return *cand.UsernameFragment
	}
	parsed, err := ice.UnmarshalCandidate(strings.TrimPrefix(cand.Candidate, "candidate:"))
	if err != nil {
		return ""
	}
	ext, _ := parsed.GetExtension("ufrag")
	return ext.Value
}

func (c *Client) peer(target string) *webrtc.PeerConnection {
	switch target {
	case signal.TargetPublisher:
		return c.pub
	case signal.TargetSubscriber:
		return c.sub
	}
	return nil
}

// flushCandidates adds the candidates held for target once its remote
// description is set.
func (c *Client) flushCandidates(target string, pc *webrtc.PeerConnection) {
	c.remoteCandidates.Lock()
	defer c.remoteCandidates.Unlock()
	var errs []error
	for _, cand := range c.pending[target] {
		errs = append(errs, pc.AddICECandidate(cand))
	}
	delete(c.pending, target)
	if err := errors.Join(errs...); err != nil {
		c.log.Debug("held_candidates_failed", "target", target, "err", err)
	}
}
