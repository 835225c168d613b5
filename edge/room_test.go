package edge

import (
	"context"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// TestRoomForwarding is the room's whole life over real sockets: three
// participants publish audio and video and each receives the other two's
// packets intact and in sequence; a fourth joins late and gets video at
// once; one leaves and the others are told and lose its tracks; when all
// have left, the instance holds nothing.
func TestRoomForwarding(t *testing.T) {
	ts := startServer(t, nil)
	names := []string{"alice", "bob", "carol"}
	clients := make([]*client.Client, len(names))
	recv := make([]*receiver, len(names))
	for i, n := range names {
		clients[i] = ts.dial(t, "demo", n)
		recv[i] = receive(t, clients[i])
		publish(t, clients[i])
	}

	const want = 40 // packets per track: almost a second at 50 per second
	for i, c := range clients {
		for j, other := range clients {
			if i == j {
				continue
			}
			for _, kind := range []string{"audio", "video"} {
				waitFor(t, 10*time.Second, names[i]+" receives "+names[j]+"'s "+kind, func() bool {
					st, _ := recv[i].stats(other.ID(), kind)
					return st.packets >= want
				})
				st, _ := recv[i].stats(other.ID(), kind)
				if st.gaps != 0 || st.corrupt != 0 {
					t.Errorf("%s from %s (%s): %d gaps, %d corrupt payloads in %d packets; want 0, 0",
						names[i], names[j], kind, st.gaps, st.corrupt, st.packets)
				}
			}
		}
		if st, ok := recv[i].stats(c.ID(), "audio"); ok {
			t.Errorf("%s received its own audio (%d packets); want none", names[i], st.packets)
		}
	}

	if got := ts.histogramCount(t, "media_join_duration", "", ""); got != 3 {
		t.Errorf("media_join_duration count = %d; want 3, one per participant", got)
	}

	// A late joiner gets every existing publication; video within a second.
	joined := time.Now()
	dave := ts.dial(t, "demo", "dave")
	if got := len(dave.Joined().Participants); got != 3 {
		t.Errorf("dave's joined lists %d participants; want 3", got)
	}
	daveRecv := receive(t, dave)
	for j, other := range clients {
		waitFor(t, 5*time.Second, "dave receives "+names[j]+"'s video", func() bool {
			st, _ := daveRecv.stats(other.ID(), "video")
			return st.packets > 0
		})
		if st, _ := daveRecv.stats(other.ID(), "video"); st.first.Sub(joined) > lateJoinVideoBound {
			t.Errorf("dave's first video from %s came %s after joining; want within %s", names[j], st.first.Sub(joined), lateJoinVideoBound)
		}
	}

	waitFor(t, 5*time.Second, "dave's join time recorded", func() bool {
		return ts.histogramCount(t, "media_join_duration", "", "") == 4
	})

	// alice leaves: everyone else is told, and her tracks end on them.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	aliceID := clients[0].ID()
	if err := clients[0].Leave(ctx); err != nil {
		t.Fatalf("alice Leave: %v", err)
	}
	for i, c := range []*client.Client{clients[1], clients[2], dave} {
		m := waitEvent(t, c, 15*time.Second, "participant_left for alice", isType(signal.TypeParticipantLeft))
		if m.Participant == nil || m.Participant.ID != aliceID {
			t.Errorf("participant_left = %+v; want alice %s", m.Participant, aliceID)
		}
		r := []*receiver{recv[1], recv[2], daveRecv}[i]
		for _, kind := range []string{"audio", "video"} {
			waitFor(t, 15*time.Second, "alice's "+kind+" track ends", func() bool {
				st, _ := r.stats(aliceID, kind)
				return st.ended
			})
		}
	}

	for _, c := range []*client.Client{clients[1], clients[2], dave} {
		if err := c.Leave(ctx); err != nil {
			t.Errorf("Leave: %v", err)
		}
	}
	waitFor(t, 5*time.Second, "session manager empty", func() bool { return ts.srv.Sessions().Len() == 0 })
	if n := ts.srv.rooms.len(); n != 0 {
		t.Errorf("rooms after everyone left = %d; want 0", n)
	}
}

// TestGrantsShapeForwarding: a participant without the subscribe grant is
// forwarded nothing (no subscriber offer at all), while one with only the
// subscribe grant receives the others' tracks.
func TestGrantsShapeForwarding(t *testing.T) {
	ts := startServer(t, nil)
	publisher := ts.dialWith(t, ts.token(t, "demo", "camera", auth.Grants{Publish: true}), client.Options{})
	viewer := ts.dialWith(t, ts.token(t, "demo", "viewer", auth.Grants{Subscribe: true}), client.Options{})
	viewerRecv := receive(t, viewer)
	publish(t, publisher)
	waitFor(t, 10*time.Second, "viewer receives the camera", func() bool {
		st, _ := viewerRecv.stats(publisher.ID(), "video")
		return st.packets > 0
	})
	// A second publisher's tracks would be offered to the first by now if
	// its grants allowed it.
	other := ts.dial(t, "demo", "other")
	publish(t, other)
	waitFor(t, 10*time.Second, "viewer receives the other", func() bool {
		st, _ := viewerRecv.stats(other.ID(), "audio")
		return st.packets > 0
	})
	if sd := publisher.Subscriber().RemoteDescription(); sd != nil {
		t.Errorf("a participant without the subscribe grant got a subscriber offer: %.80q", sd.SDP)
	}
}
