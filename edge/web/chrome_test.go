package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/media-service/media-service/internal/testenv"
)

// chromiumPath finds $CHROMIUM when set, else Debian's chromium. Without
// one the browser tests skip locally, but fail in CI, where a skipped
// browser suite would pass a build that no browser ever tried.
func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}
	if c := os.Getenv("CHROMIUM"); c != "" {
		candidates = []string{c}
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	testenv.Missing(t, "no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chrome): browser tests not run")
	return ""
}

// chromeFlags are the flags of a headless Chromium that can do WebRTC with
// fake devices on loopback, and that talks to nothing but the test server.
func chromeFlags(userDataDir string) []chromedp.ExecAllocatorOption {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.UserDataDir(userDataDir),
		chromedp.WindowSize(1280, 760),
	}
	for _, f := range []string{
		"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run", "no-default-browser-check",
		"disable-background-networking", "disable-component-update", "disable-sync", "disable-extensions",
		"disable-default-apps", "disable-domain-reliability", "disable-client-side-phishing-detection",
		"no-pings", "disable-breakpad", "disable-dev-shm-usage", "mute-audio", "password-store=basic",
		// Fake camera and microphone, granted without a prompt; 15 fps
		// is plenty to see frames flow and halves the encoding work.
		"use-fake-ui-for-media-stream", "use-fake-device-for-media-stream=fps=15",
		// getDisplayMedia picks the screen without a picker.
		"auto-select-desktop-capture-source=Entire screen",
		// WebRTC on loopback with real host candidates (the server refuses
		// to resolve mDNS names), and media playing without a user gesture.
		"allow-loopback-in-peer-connection",
		// Several tabs run at once; none may be throttled as a background tab.
		"disable-background-timer-throttling", "disable-backgrounding-occluded-windows", "disable-renderer-backgrounding",
	} {
		name, value, hasValue := strings.Cut(f, "=")
		if hasValue {
			opts = append(opts, chromedp.Flag(name, value))
		} else {
			opts = append(opts, chromedp.Flag(name, true))
		}
	}
	return append(opts,
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,Translate"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
}

// chromium is the one Chromium process of the test binary, started by the
// first browser test (a start per test cost seconds on a loaded machine)
// and ended by TestMain.
var chromium struct {
	once    sync.Once
	ctx     context.Context // a chromedp context whose browser is running
	stop    func()
	profile string
	err     error
}

func startChromium(path string) {
	chromium.profile, chromium.err = os.MkdirTemp("", "media-web-chromium-")
	if chromium.err != nil {
		return
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromeFlags(chromium.profile), chromedp.ExecPath(path))...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	chromium.ctx, chromium.stop = ctx, func() { cancel(); cancelAlloc() }
	if err := chromedp.Do(ctx); err != nil {
		chromium.err = fmt.Errorf("start chromium %s: %w", path, err)
	}
}

// stopChromium ends the browser, if a test started it, and removes its
// profile.
func stopChromium() {
	if chromium.stop != nil {
		chromium.stop()
	}
	if chromium.profile != "" {
		os.RemoveAll(chromium.profile)
	}
}

// browser is a test's own browser context (like a fresh incognito window:
// its own storage and cookies) in the shared Chromium; each page is a tab.
type browser struct {
	ctx context.Context
}

// newBrowser opens a browser context that closes, with its tabs, when the
// test ends.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	chromium.once.Do(func() { startChromium(path) })
	if chromium.err != nil {
		t.Fatal(chromium.err)
	}
	ctx, cancel := chromedp.NewContext(chromium.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a browser context: %v", err)
	}
	return &browser{ctx: ctx}
}

// page is one tab showing the demo page.
type page struct {
	t          *testing.T
	name       string
	ctx        context.Context
	console    strings.Builder // written by open's console goroutine, read only once it has ended
	exceptions atomic.Int32    // uncaught exceptions and unhandled rejections
}

// open opens url in a new tab. The tab's console is kept and printed if
// the test fails; the tab closes when the test ends, and an uncaught
// exception in it fails the test (the client must handle its errors).
func (b *browser) open(t *testing.T, name, url string) *page {
	t.Helper()
	return b.openListening(t, name, url, nil)
}

// openListening is open with listen, when not nil, called for each of
// the tab's DevTools events from before it loads url (chromedp.Listen's
// rules apply: it must return fast).
func (b *browser) openListening(t *testing.T, name, url string, listen func(ev any)) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &page{t: t, name: name, ctx: ctx}
	if listen != nil {
		if err := chromedp.Listen(ctx, listen); err != nil {
			cancel()
			t.Fatalf("%s: listen to the tab: %v", name, err)
		}
	}
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			fmt.Fprintf(&p.console, "%s %s\n", m.Time.Format("15:04:05.000"), m)
			if m.IsException() {
				p.exceptions.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() { // what every page saw, not only the one that failed
			if s, err := p.read(); err == nil {
				t.Logf("last state of %s: %s", name, s)
			}
		}
		cancel()
		<-done
		if n := p.exceptions.Load(); n > 0 {
			t.Errorf("%s: %d uncaught exceptions in the page; want none", name, n)
		}
		if t.Failed() {
			t.Logf("console of %s:\n%s", name, p.console.String())
		}
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: navigate to %s: %v", name, url, err)
	}
	return p
}

// reload reloads the tab.
func (p *page) reload() {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Reload()); err != nil {
		p.t.Fatalf("%s: reload: %v", p.name, err)
	}
}

// eval runs a script in the page.
func (p *page) eval(script string) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Evaluate[chromedp.Void](script)); err != nil {
		p.t.Fatalf("%s: eval %s: %v", p.name, script, err)
	}
}

// value evaluates a script in the page and decodes its result into v.
func (p *page) value(script string, v any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](script))
	if err != nil {
		p.t.Fatalf("%s: eval %s: %v", p.name, script, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		p.t.Fatalf("%s: decode %s: %v", p.name, raw, err)
	}
}

// typeInto replaces the text of the input with that id, as the user would.
func (p *page) typeInto(id, text string) {
	p.t.Helper()
	clear := chromedp.Evaluate[chromedp.Void](`document.getElementById(` + strconv.Quote(id) + `).value = ""`)
	if err := chromedp.Do(p.ctx, clear, chromedp.SendKeys(chromedp.ID(id), text)); err != nil {
		p.t.Fatalf("%s: type into #%s: %v", p.name, id, err)
	}
}

// click clicks the element with that id, as the user would.
func (p *page) click(id string) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Click(chromedp.ID(id))); err != nil {
		p.t.Fatalf("%s: click #%s: %v", p.name, id, err)
	}
}

// screenshot captures the visible part of the tab as PNG.
func (p *page) screenshot() []byte {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	return png
}

// snapshot is what window.mediaDemo.snapshot() reports: the page's state as
// the user sees it, read from the client and the elements.
type snapshot struct {
	State        string
	Room         string
	Self         *participant
	Peers        struct{ Publisher, Subscriber string }
	Banner       string
	DrainingSeen bool
	Reconnects   int
	Resumes      int // lost signaling connections resumed as the same participant
	Redirects    int
	URL          string // the current session's signaling URL
	Handover     *struct {
		WaitedMs int
		CaughtUp bool
	} // the last swap of a draining session for its replacement
	LastClose *struct {
		Code        int
		Reason      string
		WasClean    bool
		ByClient    bool
		LeaveReason string
	}
	Errors    []struct{ Code, Message string }
	Muted     muted
	Sharing   bool // the page shares its screen
	Receivers int  // transceivers of the subscriber connection
	// Visibility is document.visibilityState: adaptive stream pauses
	// every track of a hidden page.
	Visibility string
	// TrackSettings is the last track_settings sent per track id, as JSON.
	TrackSettings map[string]string
	Transport     *struct{ Publisher, Subscriber transport }
	Tiles         []tile
	// Chat is every chat message the page shows, its own included.
	Chat []struct {
		From, Text string
		Self       bool
	}
	// Speakers is the room's last speakers message.
	Speakers []struct {
		ID, Identity string
		Level        float64
	}
}

type participant struct{ ID, Identity string }

type muted struct{ Audio, Video bool }

type transport struct {
	RTTMs               *int
	LocalCandidateType  string
	RemoteCandidateType string
	Protocol            string
	// AvailableOutgoingKbps is the connection's send-side bandwidth
	// estimate.
	AvailableOutgoingKbps int
}

type tile struct {
	ID                   string
	Identity             string
	Local                bool
	Screen               bool // a screen share's tile, marked as one
	AudioMuted           bool // the tile shows its microphone muted
	Tracks               int
	VideoWidth           int
	VideoHeight          int
	FramesDecoded        int
	VideoPacketsReceived int // from getStats: after the SRTP check, before decoding
	AudioPacketsReceived int
	BitrateKbps          float64
	FrameWidth           int    // of the video received, from getStats
	FrameHeight          int    // likewise
	RenderedWidth        int    // the video element's width in CSS pixels
	TrackID              string // the video track shown
	Quality              string // the tile's quality picker
	SentLayers           []sentLayer
	Speaking             bool // outlined as an active speaker
}

// sentLayer is one video encoding the page sends (its own tile only), from
// getStats outbound-rtp.
type sentLayer struct {
	RID                     string
	Active                  bool
	FrameWidth              int
	FrameHeight             int
	FPS                     float64
	FramesEncoded           int
	BytesSent               int
	PLICount                int
	QualityLimitationReason string
}

// local returns the page's own tile.
func (s snapshot) local() (tile, bool) {
	for _, t := range s.Tiles {
		if t.Local {
			return t, true
		}
	}
	return tile{}, false
}

// remote returns the tile of the other participant with that identity.
func (s snapshot) remote(identity string) (tile, bool) {
	for _, t := range s.Tiles {
		if !t.Local && t.Identity == identity {
			return t, true
		}
	}
	return tile{}, false
}

func (s snapshot) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// snapshot reads the page's state once; before the page script has run it
// is the zero snapshot.
func (p *page) snapshot() snapshot {
	p.t.Helper()
	s, err := p.read()
	if err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	return s
}

// read is snapshot returning its error.
func (p *page) read() (snapshot, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second) // a hung tab fails the test, not the whole run
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](`window.mediaDemo ? window.mediaDemo.snapshot() : null`))
	if err != nil {
		return snapshot{}, fmt.Errorf("read snapshot: %w", err)
	}
	var s snapshot
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &s); err != nil {
			return snapshot{}, fmt.Errorf("decode snapshot %s: %w", raw, err)
		}
	}
	return s, nil
}

// waitFor polls the page's state until cond holds, and fails the test with
// the last state seen when it does not within timeout.
func (p *page) waitFor(what string, timeout time.Duration, cond func(snapshot) bool) snapshot {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		s := p.snapshot()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s: not within %s; last state: %s", p.name, what, timeout, s)
		}
		<-tick.C
	}
}
