package edge

import (
	"fmt"

	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

// Track sources and mute. A publisher names each track's source in its
// offer (sources, by mid); the source is fixed when the track is
// published and announced with it in track_published, to every member of
// the room. Mute is a state of the publication: the publisher sets it
// with `mute`, the server API sets it too, and every member (the
// publisher included) is told with track_muted (with reason "api" when
// the API set it, so the publisher's client mutes its own track). The SFU stops forwarding
// a muted track and its keyframe requests (sfu.Publication.SetMuted).

// noteSources records the sources an offer names, for the tracks it
// will bring; an offer without sources leaves earlier ones in place.
// Decode has bounded their count.
func (s *Session) noteSources(sources map[string]string) {
	if len(sources) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sources == nil {
		s.sources = make(map[string]sfu.Source, len(sources))
	}
	for mid, src := range sources {
		if len(s.sources) >= signal.MaxSources {
			break
		}
		s.sources[mid] = sfu.Source(src)
	}
}

// applySource sets p's source from the publisher's offer. A source that
// is unknown or of the other kind is refused with an error and the
// kind's default is used: the track is published all the same.
func (s *Session) applySource(p *sfu.Publication) {
	s.mu.Lock()
	named := s.sources[p.MID()]
	s.mu.Unlock()
	src, ok := sfu.ParseSource(string(named), p.Kind())
	if !ok {
		s.sendError(signal.CodeInvalidMessage, fmt.Sprintf("source %.32q is not one a %s track may have", named, p.Kind()))
		src, _ = sfu.ParseSource("", p.Kind())
	}
	p.SetSource(src)
}

// describeTrack is the protocol's description of p.
func describeTrack(p *sfu.Publication) signal.Track {
	return signal.Track{ID: p.ID(), Kind: p.Kind().String(), Source: string(p.Source()), Muted: p.Muted()}
}

// announce tells the room, and s itself with the track's mid, that s
// published p.
func (s *Session) announce(p *sfu.Publication, others []*Session) {
	t := describeTrack(p)
	for _, o := range others {
		o.send(&signal.Message{Type: signal.TypeTrackPublished, Participant: s.participant(), Track: &t})
	}
	own := t
	own.MID = p.MID()
	s.send(&signal.Message{Type: signal.TypeTrackPublished, Participant: s.participant(), Track: &own})
}

// handleMute applies a publisher's mute or unmute of one of its tracks.
func (s *Session) handleMute(trackID string, muted bool) {
	p := s.room.publicationOf(s, trackID)
	if p == nil {
		s.sendError(signal.CodeUnknownTrack, fmt.Sprintf("no published track %.64q", trackID))
		return
	}
	s.room.setMuted(s, p, muted, "")
}

// setMuted mutes or unmutes owner's publication p and, when that changed
// anything, tells every member of the room; reason is signal.ReasonAPI
// when the server API asked, which tells the publisher's client to apply
// the change to its own track, else "".
func (r *room) setMuted(owner *Session, p *sfu.Publication, muted bool, reason string) {
	if !p.SetMuted(muted) {
		return
	}
	t := describeTrack(p)
	r.broadcast(&signal.Message{Type: signal.TypeTrackMuted, Participant: owner.participant(), Track: &t, Reason: reason})
}

// publicationOf returns owner's publication with that id, or nil.
func (r *room) publicationOf(owner *Session, id string) *sfu.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rp, ok := r.pubs[id]; ok && rp.owner == owner {
		return rp.pub
	}
	return nil
}

// broadcast queues m for every member of the room.
func (r *room) broadcast(m *signal.Message) {
	for _, o := range r.everyone() {
		o.send(m)
	}
}

// everyone returns the room's members now.
func (r *room) everyone() []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.membersExcept(nil)
}

// describeLocked describes member o with its tracks. The caller holds
// r.mu.
func (r *room) describeLocked(o *Session) signal.Participant {
	d := *o.participant()
	for _, rp := range r.pubs {
		if rp.owner == o {
			d.Tracks = append(d.Tracks, describeTrack(rp.pub))
		}
	}
	return d
}

// Metadata is the application's metadata of the participant.
func (s *Session) Metadata() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metadata
}
