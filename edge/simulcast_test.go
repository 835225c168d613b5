package edge

import (
	"fmt"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/signal"
)

// TestSimulcastPublisherIsOneTrack: a publisher that sends one video track
// as three RID layers, as a browser with simulcast on does, is one
// publication to the room: the subscriber gets one video track and its
// media from the top layer, nothing is logged as a failed publication, and
// the further layers do not count against MEDIA_MAX_TRACKS (2 here: a
// third layer counted as a track would be refused).
func TestSimulcastPublisherIsOneTrack(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxTracks = 2 })
	bob := ts.dial(t, "r", "bob")
	got := receive(t, bob)
	alice := ts.dialSimulcast(t, "r", "alice")
	publishSimulcast(t, alice)

	waitFor(t, 15*time.Second, "bob receiving alice's simulcast video", func() bool {
		st, ok := got.stats(alice.ID(), "video")
		return ok && st.packets >= 20
	})
	if ev := ts.logs.find("publish_failed"); ev != nil {
		t.Errorf("log has publish_failed %v; want a simulcast layer to join its publication quietly", ev)
	}
	waitFor(t, 15*time.Second, "forwarding from the top layer", func() bool {
		return ts.counter(t, "media_rtp_forwarded_layer_packets", "layer", "2") > 0
	})
	got.mu.Lock()
	n := len(got.tracks)
	got.mu.Unlock()
	if n != 1 {
		t.Errorf("bob received %d tracks; want 1 (one video track for three layers)", n)
	}
}

// TestTrackSettings: a subscriber's track_settings choose the layer it
// receives and pause it, through the real server. low brings layer 0,
// high layer 2 within a few seconds with sequence numbers unbroken across
// the switch; paused stops its packets and resuming restarts them; an
// unknown track or quality gets an error and nothing else changes.
func TestTrackSettings(t *testing.T) {
	ts := startServer(t, nil)
	bob := ts.dial(t, "r", "bob")
	got := receiveSimulcast(t, bob)
	alice := ts.dialSimulcast(t, "r", "alice")
	publishSimulcast(t, alice)
	id := got.track(t)
	got.awaitLayer(t, 2, 15*time.Second)

	if err := bob.SetTrackSettings(id, signal.QualityLow, false); err != nil {
		t.Fatal(err)
	}
	got.awaitLayer(t, 0, 5*time.Second)
	_, _, gaps := got.state()
	if err := bob.SetTrackSettings(id, signal.QualityHigh, false); err != nil {
		t.Fatal(err)
	}
	got.awaitLayer(t, 2, 5*time.Second)
	if _, _, g := got.state(); g != gaps {
		t.Errorf("sequence gaps across the switch to high: %d; want 0", g-gaps)
	}

	if err := bob.SetTrackSettings(id, "", true); err != nil {
		t.Fatal(err)
	}
	waitStill(t, got, 5*time.Second)
	if err := bob.SetTrackSettings(id, "", false); err != nil {
		t.Fatal(err)
	}
	n, _, _ := got.state()
	waitFor(t, 5*time.Second, "packets after resume", func() bool {
		m, _, _ := got.state()
		return m > n+10
	})

	if err := bob.SetTrackSettings("TR_nosuchtrack", signal.QualityLow, false); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent(t, bob, 5*time.Second, "unknown_track error", isType(signal.TypeError)); m.Code != signal.CodeUnknownTrack {
		t.Errorf("error code = %q; want %q", m.Code, signal.CodeUnknownTrack)
	}
	if err := bob.SendRaw([]byte(`{"type":"track_settings","track_id":"` + id + `","quality":"ultra"}`)); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent(t, bob, 5*time.Second, "invalid_message error", isType(signal.TypeError)); m.Code != signal.CodeInvalidMessage {
		t.Errorf("error code = %q; want %q", m.Code, signal.CodeInvalidMessage)
	}
	n, _, _ = got.state()
	waitFor(t, 5*time.Second, "packets after the refused settings", func() bool {
		m, l, _ := got.state()
		return m > n+10 && l == 2
	})
	if c := ts.counter(t, "media_track_settings", "quality", "low"); c != 1 {
		t.Errorf("media_track_settings{quality=low} = %d; want 1", c)
	}
}

// waitStill waits until r has received nothing for half a second.
func waitStill(t *testing.T, r *simulcastReceiver, within time.Duration) {
	t.Helper()
	n, _, _ := r.state()
	since := time.Now()
	waitFor(t, within, "packets stopping", func() bool {
		m, _, _ := r.state()
		if m != n {
			n, since = m, time.Now()
		}
		return time.Since(since) >= 500*time.Millisecond
	})
}

// TestDynacast: the publisher is told which layers its subscribers need,
// and a publisher that obeys stops sending the others: with only a low
// subscriber it sends q alone and the server receives nothing more on
// layer 2; a second subscriber asking high brings all three back at once;
// it leaving brings back q alone; a pause leaves none.
func TestDynacast(t *testing.T) {
	ts := startServer(t, nil)
	bob := ts.dial(t, "r", "bob")
	got := receiveSimulcast(t, bob)
	alice := ts.dialSimulcast(t, "r", "alice")
	pub := publishSimulcast(t, alice)
	id := got.track(t)
	awaitLayers(t, alice, 15*time.Second, "q", "h", "f")

	if err := bob.SetTrackSettings(id, signal.QualityLow, false); err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	m := awaitLayers(t, alice, 5*time.Second, "q")
	if m.TrackID != id || m.MID != pub.track.MID() {
		t.Errorf("layers for track %q mid %q; want %q and %q", m.TrackID, m.MID, id, pub.track.MID())
	}
	waitLayerBytes(t, ts, false, asked, 2*time.Second)
	if pub.track.Active(2) || !pub.track.Active(0) {
		t.Errorf("publisher active layers q=%v f=%v; want q only", pub.track.Active(0), pub.track.Active(2))
	}
	if n := ts.counter(t, "media_paused_layers", "reason", "dynacast"); n != 2 {
		t.Errorf("media_paused_layers{reason=dynacast} = %d; want 2", n)
	}

	carol := ts.dial(t, "r", "carol")
	receiveSimulcast(t, carol)
	awaitLayers(t, alice, 10*time.Second, "q", "h", "f")
	waitLayerBytes(t, ts, true, time.Now(), 2*time.Second)

	carol.Close()
	awaitLayers(t, alice, 10*time.Second, "q")
	if err := bob.SetTrackSettings(id, signal.QualityHigh, false); err != nil {
		t.Fatal(err)
	}
	asked = time.Now()
	awaitLayers(t, alice, 5*time.Second, "q", "h", "f")
	waitLayerBytes(t, ts, true, asked, 2*time.Second)
	got.awaitLayer(t, 2, 5*time.Second)

	if err := bob.SetTrackSettings(id, signal.QualityHigh, true); err != nil {
		t.Fatal(err)
	}
	awaitLayers(t, alice, 5*time.Second, []string{}...)
}

// waitLayerBytes waits until the server's received bytes on layer 2 are
// flowing (or have stopped: unchanged for 300 ms), and fails if that
// took longer than limit after since. The wait itself allows more, so a
// miss reports how long it took.
func waitLayerBytes(t *testing.T, ts *testServer, flowing bool, since time.Time, limit time.Duration) {
	t.Helper()
	read := func() int64 { return ts.counter(t, "media_rtp_received_layer_bytes", "layer", "2") }
	last, lastAt := read(), time.Now()
	var at time.Time
	waitFor(t, limit+5*time.Second, fmt.Sprintf("layer 2 bytes flowing=%v", flowing), func() bool {
		n := read()
		if n != last {
			last, lastAt = n, time.Now()
			if flowing {
				at = lastAt
				return true
			}
		}
		if !flowing && time.Since(lastAt) >= 300*time.Millisecond {
			at = lastAt
			return true
		}
		return false
	})
	if took := at.Sub(since); took > limit {
		t.Errorf("layer 2 bytes flowing=%v after %s; want within %s", flowing, took, limit)
	}
}
