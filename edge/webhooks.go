package edge

import (
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/webhook"
)

// Webhook events are notified by the room, under its lock, at the moment
// its state changes: so a room's events are queued in the order they
// happened (room_started before the first participant_joined, every
// track_unpublished and participant_left before room_finished), and the
// notifier delivers each URL's queue in order. Notify never waits on a
// receiver, so holding the lock is no cost to media or signaling.

func (r *room) notify(kind string, s *Session, p *sfu.Publication) {
	if r.hooks == nil {
		return
	}
	ev := webhook.Event{Event: kind, Room: webhook.Room{Name: r.name}}
	if s != nil {
		ev.Participant = &webhook.Participant{ID: s.id, Identity: s.identity}
	}
	if p != nil {
		ev.Track = &webhook.Track{ID: p.ID(), Kind: p.Kind().String(), Source: string(p.Source())}
	}
	r.hooks.Notify(ev)
}
