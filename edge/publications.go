package edge

import (
	"errors"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

// onTrack publishes a track the client sends: it starts forwarding, tells
// the room and watches for the track's end. A simulcast track arrives as
// one remote track per layer, all on one receiver, in any order and at
// once: the receiver is admitted (and counted against MaxTracks) once,
// and whichever layer the engine makes the publication of is announced;
// the others join it (ErrLayerAttached).
func (s *Session) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	s.recordJoin("received")
	if !s.admitTrack(recv) {
		return
	}
	p, err := s.deps.media.Publish(remote, recv, s.pub, s.id)
	switch {
	case errors.Is(err, sfu.ErrLayerAttached):
		s.wg.Done()
		s.log.Debug("layer_attached", "publication", p.ID(), "rid", remote.RID())
		return
	case err != nil:
		s.wg.Done()
		s.log.Warn("publish_failed", "rid", remote.RID(), "err", err)
		return
	}
	s.applySource(p)
	others, ok := s.room.addPublication(s, p)
	if !ok {
		s.wg.Done()
		p.Close()
		return
	}
	s.announce(p, others)
	s.log.Debug("track_published", "publication", p.ID(), "kind", p.Kind().String())
	for _, o := range others {
		o.subscribe(p)
	}
	// The need is told on the caller's goroutine, which may hold another
	// session's lock (subscribe) and must not wait on this client's
	// queue: watch sends the latest need instead.
	need := make(chan int, 1)
	p.OnNeededLayers(func(n int) {
		select {
		case <-need: // replaced by the newer need
		default:
		}
		need <- n
	})
	go s.watch(p, recv, need)
}

// sendLayers tells the client which layers of its simulcast track p some
// subscriber needs (dynacast): the first n.
func (s *Session) sendLayers(p *sfu.Publication, n int) {
	active := p.ActiveRIDs(n)
	s.log.Debug("layers_sent", "publication", p.ID(), "active", active)
	s.send(&signal.Message{Type: signal.TypeLayers, TrackID: p.ID(), MID: p.MID(), Active: active})
	s.deps.metrics.layersSent.Add(bg, 1)
}

// admitTrack reserves a goroutine slot for a track's publication or
// layer; false when the session ended, the client may not publish, or
// recv is a new track beyond the track limit. A receiver counts once,
// however many simulcast layers it carries.
func (s *Session) admitTrack(recv *webrtc.RTPReceiver) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || !s.grants.Publish {
		return false
	}
	if _, counted := s.receivers[recv]; !counted {
		if len(s.receivers) >= s.deps.cfg.MaxTracks {
			return false
		}
		s.receivers[recv] = struct{}{}
	}
	s.wg.Add(1)
	return true
}

// watch sends the client the layers of p its subscribers need (need
// carries the latest, for a simulcast track) and waits for p's end (the
// client stopped sending it), then takes it out of the room. At the
// session's end teardown does that instead.
func (s *Session) watch(p *sfu.Publication, recv *webrtc.RTPReceiver, need <-chan int) {
	defer s.wg.Done()
	for done := false; !done; {
		select {
		case n := <-need:
			s.sendLayers(p, n)
		case <-p.Done():
			done = true
		case <-s.ending:
			return
		}
	}
	others, ok := s.room.removePublication(p)
	p.Close()
	if ok {
		t := describeTrack(p)
		for _, o := range others {
			o.unsubscribe(p)
			o.send(&signal.Message{Type: signal.TypeTrackUnpublished, Participant: s.participant(), Track: &t})
		}
	}
	s.mu.Lock()
	delete(s.receivers, recv)
	s.mu.Unlock()
}
