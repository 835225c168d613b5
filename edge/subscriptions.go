package edge

import (
	"fmt"

	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

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
		if err := s.sub.Unsubscribe(sub); err != nil {
			s.log.Debug("unsubscribe_failed", "err", err)
		}
	}
	if len(gone) > 0 {
		s.requestOffer()
	}
}

// handleTrackSettings applies a subscriber's track_settings to its
// subscription of that publication: the quality caps the layer, a
// max_width or max_height picks the smallest layer covering it, paused
// stops or resumes forwarding. Decode has checked the values.
func (s *Session) handleTrackSettings(m *signal.Message) {
	s.mu.Lock()
	sub := s.subs[m.TrackID]
	s.mu.Unlock()
	if sub == nil {
		s.sendError(signal.CodeUnknownTrack, fmt.Sprintf("no subscribed track %.64q", m.TrackID))
		return
	}
	layer, _ := signal.QualityLayer(m.Quality)
	s.deps.metrics.trackSetting(m)
	sub.ApplyRequest(sfu.Request{MaxLayer: layer, MaxWidth: m.MaxWidth, MaxHeight: m.MaxHeight, Paused: m.Paused})
}

// sendSubscriptionState tells the client what the bandwidth allocation of
// its subscriber connection did to one of its tracks: paused for
// congestion, or capped at a quality. It runs on the connection's
// feedback goroutine (sfu.SubscriberConn.OnSubscriptionState), a few
// times a minute at most per track; a full send queue holds it no longer
// than the slow-client bound, which then ends the session.
func (s *Session) sendSubscriptionState(st sfu.SubscriptionState) {
	s.send(&signal.Message{Type: signal.TypeSubscriptionState, TrackID: st.Subscription.Publication().ID(),
		Reason: st.Paused, Quality: signal.LayerQuality(st.Layer)})
}
