package edge

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// Active speakers (edge/PROTOCOL.md, "Active speakers"). The SFU reads
// each audio packet's RFC 6464 level into its publication's window; every
// speakerInterval one goroutine of the instance (speakersLoop) takes every
// room's windows, smooths each track's level, and sends the room the
// ordered list of who speaks when it differs from the last one sent.

// speakerInterval is how often rooms' speakers are ranked, so a room gets
// a speakers message at most this often: twice a second follows a
// conversation without a message per word.
const speakerInterval = 500 * time.Millisecond

// speakerMinActive is the share of a window's packets that must be louder
// than sfu.ActiveLevelDBov for its participant to count as speaking: a
// cough or a click is one or two packets of 25, speech is most of them.
// A speaker who stops is off the list after one silent window.
const speakerMinActive = 0.4

// speakerSmoothing is the weight of the newest window in a track's
// smoothed level, which orders the speakers: a half keeps the order from
// flapping on every syllable and still follows a new loud speaker within
// one window.
const speakerSmoothing = 0.5

// roomSpeakers is one room's ranking state. Only the speakers goroutine
// touches it (rankSpeakers), so it needs no lock.
type roomSpeakers struct {
	smoothed map[string]float64 // by publication id
	last     []signal.Speaker   // the list last sent
}

// speakersLoop ranks every room's speakers each speakerInterval until ctx
// ends. Each round's messages go out on the members' own goroutines, so
// nobody waits for a member whose queue is full; the next round waits for
// them all, so a member never gets two lists out of order (a slow member
// can delay it by the send timeout, and is then disconnected).
func (rs *rooms) speakersLoop(ctx context.Context) {
	t := time.NewTicker(speakerInterval)
	defer t.Stop()
	var round sync.WaitGroup
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, r := range rs.all() {
			r.rankSpeakers(&round)
		}
		round.Wait()
	}
}

// all returns the rooms now.
func (rs *rooms) all() []*room {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]*room, 0, len(rs.m))
	for _, r := range rs.m {
		out = append(out, r)
	}
	return out
}

// rankSpeakers takes the room's audio windows and, when the ordered list
// of speakers changed, sends it to every member as part of round.
func (r *room) rankSpeakers(round *sync.WaitGroup) {
	r.mu.Lock()
	audio := make([]roomPub, 0, len(r.pubs))
	for _, p := range r.pubs {
		if p.pub.Kind() == webrtc.RTPCodecTypeAudio {
			audio = append(audio, p)
		}
	}
	members := r.membersExcept(nil)
	r.mu.Unlock()
	list := r.speakers.rank(audio)
	if sameSpeakers(list, r.speakers.last) {
		return
	}
	r.speakers.last = list
	m := &signal.Message{Type: signal.TypeSpeakers, Speakers: list}
	for _, s := range members {
		s.sendDetached(m, round)
	}
}

// rank smooths each track's level with its newest window and returns the
// participants speaking now, loudest first (one entry per participant,
// at its loudest track's level).
func (sp *roomSpeakers) rank(audio []roomPub) []signal.Speaker {
	prev := sp.smoothed
	sp.smoothed = make(map[string]float64, len(audio)) // tracks gone are forgotten
	best := map[*Session]float64{}
	for _, p := range audio {
		w := p.pub.TakeAudioLevel()
		level := speakerSmoothing*w.Level + (1-speakerSmoothing)*prev[p.pub.ID()]
		sp.smoothed[p.pub.ID()] = level
		if w.Packets > 0 && w.Active >= speakerMinActive && level >= best[p.owner] {
			best[p.owner] = level
		}
	}
	out := make([]signal.Speaker, 0, len(best))
	for s, level := range best {
		out = append(out, signal.Speaker{ID: s.id, Identity: s.identity, Level: math.Round(level*1000) / 1000})
	}
	slices.SortFunc(out, func(a, b signal.Speaker) int {
		if a.Level != b.Level {
			return -cmpFloat(a.Level, b.Level)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sameSpeakers reports whether two lists name the same participants in
// the same order: a level that moved alone is no news.
func sameSpeakers(a, b []signal.Speaker) bool {
	return slices.EqualFunc(a, b, func(x, y signal.Speaker) bool { return x.ID == y.ID })
}
