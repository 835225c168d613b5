package web_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// simulcastTimeout bounds how long a viewer may take to reach a layer.
// The top layer needs the publisher's bandwidth estimate to ramp up to
// about 2.4 Mbit/s first, which takes Chromium seconds even on loopback,
// longer on a loaded two-core machine.
const simulcastTimeout = 60 * time.Second

// maxFreeze bounds the longest time a viewer's video decodes no frame
// across a layer switch. The target is 500 ms, logged; the bound
// is a freeze a user would call broken, with room for a loaded 2-core CI
// host on which the browser, the server and congestion control's
// decisions share the CPUs (3.1 s was seen there once, with the first
// frame of the new layer 293 ms after the request).
const maxFreeze = 5 * time.Second

// A publisher with a 1280x720 camera sends three layers; a viewer whose
// tile fills the call area receives the full 1280 px layer, a viewer that
// asks for low receives the 320 px one and, once it asks for high, the
// 1280 px one without its video freezing.
func TestBrowserSimulcastLayers(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t)
	base := serviceURL(svc)
	pub := b.open(t, "pub", joinURL(base, "sim", "pub", "quality=high"))
	// Three encodings, all stopped by dynacast until someone subscribes.
	pub.waitFor("publish three layers", simulcastTimeout, func(s snapshot) bool {
		l, ok := s.local()
		return ok && len(l.SentLayers) == 3
	})

	full := b.open(t, "full", joinURL(base, "sim", "full"))
	waitReceiving(full, "pub")
	full.eval(`document.querySelector('.tile[data-identity="pub"] video').click()`) // spotlight: the whole call area
	// Before adaptive stream speaks, the server's default is high, so
	// wait for the page to have asked for its tile's size (wider than the
	// middle layer), then for 1280 px, and check that it stays after more
	// frames.
	full.waitFor("receive 1280 px in the spotlit tile", simulcastTimeout, func(s snapshot) bool {
		r, ok := s.remote("pub")
		return ok && r.RenderedWidth > 640 && askedWidth(s.TrackSettings[r.TrackID]) > 640 && r.FrameWidth == 1280
	})
	if r, _ := waitReceiving(full, "pub").remote("pub"); r.FrameWidth != 1280 {
		t.Errorf("spotlit tile: frame width %d after more frames; want 1280", r.FrameWidth)
	}
	logLayers(t, pub)

	low := b.open(t, "low", joinURL(base, "sim", "low"))
	waitReceiving(low, "pub")
	setQuality(low, "pub", "low")
	low.waitFor("receive 320 px after asking for low", simulcastTimeout, func(s snapshot) bool {
		r, ok := s.remote("pub")
		return ok && r.FrameWidth == 320
	})

	startFreezeMonitor(low, "pub")
	asked := time.Now()
	low.eval(`window.freezeMonitor.expectWidth(1280)`)
	setQuality(low, "pub", "high")
	low.waitFor("receive 1280 px after asking for high", simulcastTimeout, func(s snapshot) bool {
		r, ok := s.remote("pub")
		return ok && r.FrameWidth == 1280
	})
	var switchMs float64
	low.value(`window.freezeMonitor.reachedMs()`, &switchMs)
	t.Logf("low viewer: first 1280 px frame decoded %.0f ms after asking for high (issue target 2 s; page-side, 50 ms polls; %s as the test's snapshots saw it)",
		switchMs, time.Since(asked).Round(100*time.Millisecond))
	// Frames keep coming at the new layer, then the longest gap counts.
	waitReceiving(low, "pub")
	var gapMs float64
	low.value(`window.freezeMonitor.maxGapMs()`, &gapMs)
	t.Logf("low viewer: longest gap between decoded frames across the switch: %.0f ms (issue target 500 ms)", gapMs)
	if gap := time.Duration(gapMs) * time.Millisecond; gap > maxFreeze {
		t.Errorf("low viewer froze for %s across the switch to high; want at most %s", gap, maxFreeze)
	}

	// Dynacast: once no viewer wants more than low, the publisher's
	// browser stops its two upper encodings (active false in getStats).
	setQuality(low, "pub", "low")
	full.eval(`document.querySelector('.tile[data-identity="pub"] .quality').value = "low"`)
	setQuality(full, "pub", "low")
	pub.waitFor("stop the upper layers no one watches", simulcastTimeout, func(s snapshot) bool {
		l, _ := s.local()
		active := map[string]bool{}
		for _, layer := range l.SentLayers {
			active[layer.RID] = layer.Active
		}
		return len(active) == 3 && active["q"] && !active["h"] && !active["f"]
	})

	s := logLayers(t, pub)
	l, _ := s.local()
	plis := 0
	for _, layer := range l.SentLayers {
		plis += layer.PLICount
	}
	// Each subscribe and each switch up may ask for a keyframe, throttled
	// by the server; a storm would be hundreds.
	t.Logf("publisher: %d PLIs received over the test, all layers (bound 60)", plis)
	if plis > 60 {
		t.Errorf("publisher received %d PLIs over the test; want at most 60", plis)
	}
	for _, p := range []*page{pub, full, low} {
		s := p.snapshot()
		t.Logf("%s: page %s, track_settings sent %v", p.name, s.Visibility, s.TrackSettings)
		if len(s.Errors) > 0 {
			t.Errorf("%s: page showed errors %v; want none", p.name, s.Errors)
		}
	}
}

// askedWidth is the max_width of a track_settings message as the page
// sent it (JSON), 0 without one.
func askedWidth(msg string) int {
	var m struct {
		MaxWidth int `json:"max_width"`
	}
	_ = json.Unmarshal([]byte(msg), &m)
	return m.MaxWidth
}

// setQuality picks a quality in the picker of identity's tile, as a user
// would.
func setQuality(p *page, identity, quality string) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`(() => {
		const sel = document.querySelector('.tile[data-identity=%s] .quality');
		sel.value = %s;
		sel.dispatchEvent(new Event("change"));
	})()`, strconv.Quote(identity), strconv.Quote(quality)))
}

// startFreezeMonitor polls the page's getStats every 50 ms for the frames
// decoded of identity's video and keeps the longest time between two
// increases (window.freezeMonitor.maxGapMs()): a switch that stalls the
// decoder shows there, where the page's once-a-second stats would hide it.
// After window.freezeMonitor.expectWidth(w), reachedMs() is how long until
// the decoded frames were w wide (-1 until then): the switch time the
// issue asks for, measured in the page and not through the snapshots.
func startFreezeMonitor(p *page, identity string) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`(() => {
		const tile = document.querySelector('.tile[data-identity=%s] video');
		const trackId = tile.srcObject.getVideoTracks()[0].id;
		let frames = -1, at = 0, maxGap = 0, expectAt = 0, expect = 0, reached = -1;
		const poll = async () => {
			const pc = mediaClient.session?.pcs.subscriber;
			if (!pc) return;
			let f = -1, w = 0;
			(await pc.getStats()).forEach((r) => {
				if (r.type === "inbound-rtp" && r.trackIdentifier === trackId) {
					f = r.framesDecoded ?? 0;
					w = r.frameWidth ?? 0;
				}
			});
			const now = performance.now();
			if (expect && reached < 0 && w >= expect) reached = now - expectAt;
			if (f > frames) {
				if (at) maxGap = Math.max(maxGap, now - at);
				frames = f;
				at = now;
			}
		};
		setInterval(poll, 50);
		window.freezeMonitor = {
			maxGapMs: () => Math.max(maxGap, at ? performance.now() - at : 0),
			expectWidth: (width) => { expect = width; expectAt = performance.now(); reached = -1; },
			reachedMs: () => reached,
		};
	})()`, strconv.Quote(identity)))
}

// logLayers logs what the publisher sends per layer, and why the encoder
// holds a layer back (qualityLimitationReason), and returns the snapshot.
func logLayers(t *testing.T, pub *page) snapshot {
	t.Helper()
	s := pub.snapshot()
	l, _ := s.local()
	var pref string
	pub.value(`mediaClient.session.pcs.publisher.getSenders().find((s) => s.track?.kind === "video")?.getParameters().degradationPreference ?? "unset"`, &pref)
	if s.Transport != nil {
		t.Logf("publisher bandwidth estimate: %d kbit/s, degradationPreference %s", s.Transport.Publisher.AvailableOutgoingKbps, pref)
	}
	for _, layer := range l.SentLayers {
		t.Logf("publisher layer %q: active %v, %dx%d at %.0f fps, %d frames, %d bytes, %d PLIs, limited by %q",
			layer.RID, layer.Active, layer.FrameWidth, layer.FrameHeight, layer.FPS, layer.FramesEncoded,
			layer.BytesSent, layer.PLICount, layer.QualityLimitationReason)
	}
	return s
}
