package edge

import (
	"errors"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/sfu"
)

// onTrack publishes a track the client sends: it starts forwarding, tells
// the room and watches for the track's end.
func (s *Session) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	s.recordJoin("received")
	if !s.admitTrack() {
		return
	}
	p, err := s.deps.media.Publish(remote, recv, s.pub, s.id)
	switch {
	case errors.Is(err, sfu.ErrLayerAttached):
		// A further simulcast layer of a track already published and
		// announced: it feeds that publication and counts as no track.
		s.unadmitTrack()
		s.log.Debug("layer_attached", "publication", p.ID(), "rid", remote.RID())
		return
	case err != nil:
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
	if s.ended || !s.grants.Publish || s.published >= s.deps.cfg.MaxTracks {
		return false
	}
	s.published++
	s.wg.Add(1)
	return true
}

// unadmitTrack gives back the slot admitTrack reserved, for a track that
// turned out to be a layer of a publication already counted.
func (s *Session) unadmitTrack() {
	s.mu.Lock()
	s.published--
	s.mu.Unlock()
	s.wg.Done()
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
