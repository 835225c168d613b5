package edge

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// TestTrackSettingsBySize: a subscriber asking by max_width/max_height
// gets the smallest layer that covers the size, read from the publisher's
// VP8 keyframes (320×180, 640×360, 1280×720): 320 wide brings the low
// layer (and dynacast tells the publisher it alone is needed), 1280 the
// high one, 600 the middle one, and a quality caps what the size would
// pick. A negative or absurd size gets invalid_message, and the session
// and its media go on as they were.
func TestTrackSettingsBySize(t *testing.T) {
	ts := startServer(t, nil)
	bob := ts.dial(t, "r", "bob")
	got := receiveSimulcast(t, bob)
	alice := ts.dialSimulcast(t, "r", "alice")
	publishSimulcast(t, alice)
	id := got.track(t)
	got.awaitLayer(t, 2, 15*time.Second)

	steps := []struct {
		width, height int
		quality       string
		want          int
	}{
		{320, 0, "", 0},
		{1280, 720, "", 2},
		{600, 0, "", 1},
		{0, 700, "", 2},
		{1280, 0, signal.QualityLow, 0},
		{321, 180, "", 1},
	}
	for _, st := range steps {
		m := &signal.Message{Type: signal.TypeTrackSettings, TrackID: id, Quality: st.quality, MaxWidth: st.width, MaxHeight: st.height}
		if err := bob.Send(m); err != nil {
			t.Fatal(err)
		}
		got.awaitLayer(t, st.want, 5*time.Second)
		if st.width == 320 {
			awaitLayers(t, alice, 5*time.Second, "q")
		}
	}

	for _, bad := range []string{`"max_width":-1`, `"max_height":100000`, `"max_width":16385,"max_height":10`} {
		raw := fmt.Sprintf(`{"type":"track_settings","track_id":%q,%s}`, id, bad)
		if err := bob.SendRaw([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		m := waitEvent(t, bob, 5*time.Second, "error for "+bad, isType(signal.TypeError))
		if m.Code != signal.CodeInvalidMessage {
			t.Errorf("track_settings with %s: error code %q; want %q", bad, m.Code, signal.CodeInvalidMessage)
		}
	}
	n, _, _ := got.state()
	waitFor(t, 5*time.Second, "layer 1 still forwarded after the refused settings", func() bool {
		m, l, _ := got.state()
		return m > n+10 && l == 1
	})
	if c := ts.counter(t, "media_track_settings", "quality", "size"); c != 5 {
		t.Errorf(`media_track_settings{quality="size"} = %d; want 5`, c)
	}
}

// TestTrackSettingsByDeclaredSize: an H.264 publisher, whose keyframes
// the server does not read, declares its layers as a 1080p camera's
// (480, 960, 1920 wide) in its offer; a subscriber asking for 900 wide
// gets the middle layer, where the rid order's 640 would have sent the
// top one, and 481 the middle one too.
func TestTrackSettingsByDeclaredSize(t *testing.T) {
	ts := startServer(t, nil)
	bob := ts.dial(t, "r", "bob")
	got := receiveSimulcast(t, bob)
	alice := ts.dialSimulcast(t, "r", "alice")
	publishSimulcastWith(t, alice, webrtc.MimeTypeH264, [3]client.LayerSize{{Width: 480, Height: 270}, {Width: 960, Height: 540}, {Width: 1920, Height: 1080}})
	id := got.track(t)
	got.awaitLayer(t, 2, 15*time.Second)
	for _, st := range []struct{ width, want int }{{900, 1}, {480, 0}, {481, 1}, {961, 2}} {
		if err := bob.SetTrackSize(id, st.width, 0, false); err != nil {
			t.Fatal(err)
		}
		got.awaitLayer(t, st.want, 5*time.Second)
	}
}
