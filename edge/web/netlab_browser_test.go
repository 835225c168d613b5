package web_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/media-service/media-service/internal/netlab"
)

// newBrowserIn starts a Chromium of the test's own inside h's network
// namespace, with the suite's flags, and opens a browser context in it.
// origin (the service's URL as seen from inside) is treated as secure, so
// the page may use the camera over plain HTTP on a non-loopback address.
// The browser ends with the test.
func newBrowserIn(t *testing.T, h *netlab.Host, origin string) *browser {
	t.Helper()
	path := chromiumPath(t)
	profile := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromeFlags(profile), chromedp.ExecPath(path), chromedp.ModifyCmdFunc(h.Wrap),
			chromedp.Flag("unsafely-treat-insecure-origin-as-secure", origin))...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium in %s: %v", h.Name, err)
	}
	return &browser{ctx: ctx}
}

// TestBrowserInNamespace: a page in a network namespace joins the demo
// room through the veth and plays a publisher page's video from outside;
// with the link down its video stops. The helpers here are what issues
// 16 and 17 build their constrained-path browser tests on.
func TestBrowserInNamespace(t *testing.T) {
	outside := newBrowser(t)
	h := netlab.NewHost(t, "browser")
	// HTTP on every interface: the outside page uses loopback (a secure
	// origin), the inside one the root-side veth address. The ICE mux is
	// on the veth address, which both reach.
	svc := startService(t, "MEDIA_HTTP_HOST=", "MEDIA_ICE_BIND_ADDR="+h.HostAddr.String(), "MEDIA_ICE_TCP_PORT=-1")
	_, port, _ := net.SplitHostPort(svc.HTTPAddr)
	insideURL := "http://" + net.JoinHostPort(h.HostAddr.String(), port)
	alice := outside.open(t, "alice", joinURL("http://127.0.0.1:"+port, "netlab", "alice"))
	bob := newBrowserIn(t, h, insideURL).open(t, "bob", joinURL(insideURL, "netlab", "bob"))

	waitReceiving(bob, "alice")
	waitReceiving(alice, "bob")
	if err := h.Down(); err != nil {
		t.Fatal(err)
	}
	// Frames in flight and in the jitter buffer still decode; then none,
	// for 2 s on end (a starved tab may pause for a poll or two).
	var last int
	since := time.Now()
	bob.waitFor("stop decoding alice's video with the link down", 20*time.Second, func(s snapshot) bool {
		tl, _ := s.remote("alice")
		if tl.FramesDecoded != last {
			last, since = tl.FramesDecoded, time.Now()
		}
		return time.Since(since) >= 2*time.Second
	})
	t.Logf("bob stopped at %d frames decoded", last)
}
