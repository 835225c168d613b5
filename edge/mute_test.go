package edge

import (
	"context"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// TestSourcesAndUnpublish: the sources an offer names reach the room in
// track_published; an unknown source is refused with an error and the
// track keeps its kind's default; a track the publisher removes is
// announced with track_unpublished.
func TestSourcesAndUnpublish(t *testing.T) {
	ts := startServer(t, nil)
	ann := ts.dial(t, "r", "ann")
	bob := ts.dial(t, "r", "bob")
	screen, err := client.NewVideoTrack("screen")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := client.NewAudioTrack("a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	senders, err := ann.PublishAs(ctx, "screen_share", screen)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ann.PublishAs(ctx, "camera", audio); err != nil { // camera: not an audio source
		t.Fatal(err)
	}
	startSending(t, screen, audio)

	got := map[string]signal.Track{} // by kind; waitEvent drops what it skips, so take both in one pass
	waitEvent(t, bob, 10*time.Second, "track_published of both", func(m *signal.Message) bool {
		if m.Type == signal.TypeTrackPublished && m.Participant.Identity == "ann" {
			got[m.Track.Kind] = *m.Track
		}
		return len(got) == 2
	})
	video := got["video"]
	if video.Source != "screen_share" {
		t.Errorf("video track source = %q; want screen_share", video.Source)
	}
	if a := got["audio"]; a.Source != "microphone" {
		t.Errorf("audio track named camera: source %q; want the default microphone", a.Source)
	}
	awaitMedia(t, bob, ann) // bob's first negotiation is over before the test may end
	e := waitEvent(t, ann, 10*time.Second, "error for the bad source", isType(signal.TypeError))
	if e.Code != signal.CodeInvalidMessage {
		t.Errorf("error code %q; want %q", e.Code, signal.CodeInvalidMessage)
	}

	if err := ann.Unpublish(ctx, senders[0]); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, bob, 10*time.Second, "track_unpublished", func(m *signal.Message) bool {
		return m.Type == signal.TypeTrackUnpublished && m.Track.ID == video.ID && m.Track.Source == "screen_share"
	})
}
