package web_test

import (
	"net"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/netlab"
)

// watchFramesJS records in window.videoBackAt the time (ms since the
// epoch, the test's clock too) when the page's subscriber connection has
// decoded more than 5 video frames beyond what it had when the script
// started, reading getStats every 50 ms.
const watchFramesJS = `(() => {
  window.videoBackAt = 0;
  const pc = window.mediaClient.session.pcs.subscriber;
  const frames = async () => {
    let n = 0;
    (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") n += r.framesDecoded ?? 0; });
    return n;
  };
  (async () => {
    const start = await frames();
    while (!(await frames() > start + 5)) await new Promise((r) => setTimeout(r, 50));
    window.videoBackAt = Date.now();
  })();
})()`

// TestBrowserKeepsParticipantThroughLinkCut: a page inside a network
// namespace loses its network for 6 s (its veth link goes down: media and
// signaling both) and gets it back. It stays the same participant, the
// page outside keeps its tile (no leave), and video plays again both ways
// within 3 s of the restore (logged; asserted with a margin for a loaded
// two-core machine). Measured on a loaded two-core machine, medians of
// three runs each (the later of the two directions): 6.75 s before the
// SFU told an outage from congestion, 3.64 s with that, 0.63 s (at most
// 1.82 s) once the server also asks for keyframes when a path comes back
// (a browser's decoder waits 3 s before asking itself).
func TestBrowserKeepsParticipantThroughLinkCut(t *testing.T) {
	outside := newBrowser(t)
	h := netlab.NewHost(t, "resume")
	svc := startService(t, "MEDIA_HTTP_HOST=", "MEDIA_ICE_BIND_ADDR="+h.HostAddr.String(), "MEDIA_ICE_TCP_PORT=-1",
		"MEDIA_RESUME_GRACE=15s")
	_, port, _ := net.SplitHostPort(svc.HTTPAddr)
	insideURL := "http://" + net.JoinHostPort(h.HostAddr.String(), port)
	alice := outside.open(t, "alice", joinURL("http://127.0.0.1:"+port, "cut", "alice"))
	bob := newBrowserIn(t, h, insideURL).open(t, "bob", joinURL(insideURL, "cut", "bob"))
	waitReceiving(alice, "bob")
	bobBefore := waitReceiving(bob, "alice")
	bobTile, _ := waitReceiving(alice, "bob").remote("bob")

	if err := h.Down(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // the length of the cut: network time, not a wait for a state
	if err := h.Up(); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	// Each page times its own first frames after the restore: the demo's
	// stats refresh once a second, too coarse for the figure.
	pages := []*page{bob, alice}
	for _, p := range pages {
		p.eval(watchFramesJS)
	}
	back := make([]time.Duration, 2)
	for back[0] == 0 || back[1] == 0 {
		if time.Since(restored) > 30*time.Second {
			t.Fatalf("video not back 30 s after the restore: %v (0: not yet), bob %s, alice %s", back, bob.snapshot(), alice.snapshot())
		}
		for i, p := range pages {
			var at int64
			if p.value(`window.videoBackAt`, &at); back[i] == 0 && at > 0 {
				back[i] = time.UnixMilli(at).Sub(restored)
			}
		}
		time.Sleep(100 * time.Millisecond) // a poll of the pages' own timing, not a wait for a state
	}
	toBob, toAlice := back[0], back[1]
	t.Logf("video again after the restore: at bob (inside) %s, at alice (outside) %s; issue 17 asks for 3 s", toBob.Round(10*time.Millisecond), toAlice.Round(10*time.Millisecond))
	const target, margin = 3 * time.Second, 4 * time.Second
	if toBob > target+margin || toAlice > target+margin {
		t.Errorf("video back after %s at bob, %s at alice; want within %s of the restore (plus %s for a loaded machine)", toBob, toAlice, target, margin)
	}
	s := bob.snapshot()
	if s.Self == nil || s.Self.ID != bobBefore.Self.ID || s.Reconnects != 0 {
		t.Errorf("bob after the cut: self %+v, %d reconnects; want %s and none", s.Self, s.Reconnects, bobBefore.Self.ID)
	}
	if tl, ok := alice.snapshot().remote("bob"); !ok || tl.ID != bobTile.ID {
		t.Errorf("alice's tile of bob after the cut: %+v; want the same participant %s", tl, bobTile.ID)
	}
}
