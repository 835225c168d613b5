package load

import (
	"context"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/pion/webrtc/v4"
)

// serverTarget is the instances under load: where to signal, where to
// scrape, how to get tokens, and (with -spawn) the process itself.
type serverTarget struct {
	urls      []string // HTTP base URLs, one per instance
	rtc       []string // their signaling WebSocket URLs, in the same order
	placement string   // PlaceRoundRobin or PlaceRandom
	scrapers  []*scraper
	api       *webrtc.API
	tokens    *tokenSource
	spawned   *spawned

	mu     sync.Mutex     // guards next and placed
	next   int            // round robin: the index of the next join's URL
	placed map[string]int // joins dialled through each base URL

	// clientLog receives the participants' client diagnostics (a server
	// offer the client could not answer, a candidate it could not add),
	// and Pion's warnings go to clientDiag too, which counts them all and
	// shows the first few.
	clientLog  *slog.Logger
	clientDiag *diagWriter
	events     serverEvents
}

// openTarget resolves the instances: the one -spawn starts, or -url or
// -urls. The spawned instance is sized for maxSessions participants.
func openTarget(ctx context.Context, cfg Config, maxSessions int, pr *progress) (*serverTarget, error) {
	t := &serverTarget{urls: cfg.URLs, placement: cfg.Placement, placed: make(map[string]int)}
	opsURLs := cfg.OpsURLs
	if cfg.Spawn != "" {
		s, err := spawn(ctx, cfg.Spawn, maxSessions+16, cfg.ChildStderr)
		if err != nil {
			return nil, err
		}
		t.spawned, t.urls, opsURLs = s, []string{s.httpURL}, []string{s.opsURL}
		pr.printf("spawned %s: signaling %s, ops %s", cfg.Spawn, s.httpURL, s.opsURL)
	}
	loopback := true
	for _, u := range t.urls {
		t.rtc = append(t.rtc, rtcURL(u))
		loopback = loopback && isLoopbackURL(u)
	}
	for _, u := range opsURLs {
		t.scrapers = append(t.scrapers, newScraper(u))
	}
	t.clientDiag = &diagWriter{w: pr.writer(), show: 10}
	t.clientLog = slog.New(slog.NewTextHandler(t.clientDiag, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	if t.api, err = newLoadAPI(loopback, cfg.NACK, t.clientDiag); err != nil {
		t.close()
		return nil, err
	}
	t.tokens = newTokenSource(cfg, t.urls[0])
	return t, nil
}

// place picks the instance the next participant joins through, by the
// configured placement, and counts it.
func (t *serverTarget) place() (rtc string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.next
	if t.placement == PlaceRandom {
		i = rand.IntN(len(t.urls))
	}
	t.next = (i + 1) % len(t.urls)
	t.placed[t.urls[i]]++
	return t.rtc[i]
}

// finish copies what the participants' clients saw into the report. Our
// participants are well behaved and leave by themselves, so any `error`
// or `leave` from the server means something went wrong: the run fails.
// A redirect is no failure: it is how a fleet places a room.
func (t *serverTarget) finish(rep *Report) {
	rep.ClientDiagnostics = t.clientDiag.n.Load()
	rep.ServerEvents = t.events.snapshot()
	for _, k := range slices.Sorted(maps.Keys(rep.ServerEvents)) {
		rep.fail("the server sent %s %d times", k, rep.ServerEvents[k])
	}
	if len(t.urls) > 1 {
		t.mu.Lock()
		rep.Placement = &placementReport{Policy: t.placement, Joins: maps.Clone(t.placed)}
		t.mu.Unlock()
	}
	if rep.Joins != nil {
		rep.Joins.Redirected = t.events.redirects.Load()
	}
}

// close stops a spawned instance (it drains on SIGTERM).
func (t *serverTarget) close() error {
	if t.spawned == nil {
		return nil
	}
	return t.spawned.stop()
}

// sample scrapes every instance and sums their numbers, or returns
// ok=false when scraping is off.
func (t *serverTarget) sample(ctx context.Context) (serverSample, bool, error) {
	var sum serverSample
	for _, s := range t.scrapers {
		smp, err := s.sample(ctx)
		if err != nil {
			return sum, false, err
		}
		sum.add(smp)
	}
	return sum, len(t.scrapers) > 0, nil
}

// sampleLive is sample after a garbage collection on every instance: for
// before/after comparisons of the heap.
func (t *serverTarget) sampleLive(ctx context.Context) (serverSample, bool, error) {
	for _, s := range t.scrapers {
		s.collect(ctx)
	}
	return t.sample(ctx)
}
