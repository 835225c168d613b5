package load

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
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
	relay     bool // subscribers connect relay-only (Config.Relay)
	loopback  bool // every instance is on this machine: ICE stays on loopback
	// headerEncryption is the participants' Cryptex policy: disabled
	// with -light, whose receivers read header extensions in the clear,
	// for every participant alike so the instance serves all the same;
	// Pion's default otherwise.
	headerEncryption webrtc.RTPHeaderEncryptionPolicy
	tokens           *tokenSource
	spawned          *spawned
	fleet            *fleet // with -spawn-fleet, instead of spawned

	mu     sync.Mutex     // guards next, placed, drained and last
	next   int            // round robin: the index of the next join's URL
	placed map[string]int // joins dialled through each base URL
	// drained marks the scrapers of instances a drain stopped; once one
	// no longer answers, its last sample stands for it.
	drained map[*scraper]bool
	last    map[*scraper]serverSample

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
	switch {
	case cfg.SpawnFleet > 0:
		// A drain moves every participant of an instance onto a sibling,
		// each briefly twice (make before break).
		f, err := spawnFleet(ctx, cfg.Spawn, cfg.SpawnFleet, 2*maxSessions+16, cfg.ChildStderr)
		if err != nil {
			return nil, err
		}
		t.fleet, t.urls, opsURLs = f, nil, nil
		for _, s := range f.nodes {
			t.urls, opsURLs = append(t.urls, s.httpURL), append(opsURLs, s.opsURL)
		}
		pr.printf("spawned redis on %s and %d instances of %s: signaling %v", f.redisAddr, len(f.nodes), cfg.Spawn, t.urls)
	case cfg.Spawn != "":
		env := spawnEnv(maxSessions + 16)
		if cfg.Relay {
			env = append(env, spawnRelayEnv...)
		}
		env = append(env, cfg.spawnEnv...)
		if cfg.GOMAXPROCS > 0 {
			env = append(env, "GOMAXPROCS="+strconv.Itoa(cfg.GOMAXPROCS))
		}
		s, err := spawn(ctx, cfg.Spawn, env, cfg.CPUs, cfg.ChildStderr)
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
	t.relay, t.loopback = cfg.Relay, loopback
	if cfg.Light != LightOff {
		t.headerEncryption = webrtc.RTPHeaderEncryptionPolicyDisable
	}
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

// close stops a spawned instance or fleet (they drain on SIGTERM).
func (t *serverTarget) close() error {
	switch {
	case t.fleet != nil:
		return t.fleet.stop()
	case t.spawned != nil:
		return t.spawned.stop()
	}
	return nil
}

// sample scrapes every instance and sums their numbers, or returns
// ok=false when scraping is off.
func (t *serverTarget) sample(ctx context.Context) (serverSample, bool, error) {
	var sum serverSample
	for _, s := range t.scrapers {
		smp, err := t.sampleOne(ctx, s)
		if err != nil {
			return sum, false, err
		}
		sum.add(smp)
	}
	return sum, len(t.scrapers) > 0, nil
}

// baseline is sample before the first join, the idle footprint; its
// error says how to run without the instances' metrics.
func (t *serverTarget) baseline(ctx context.Context) (serverSample, bool, error) {
	s, ok, err := t.sample(ctx)
	if err != nil {
		return s, false, fmt.Errorf("server metrics before the run (pass -ops-url '', or leave out -ops-urls, to skip them): %w", err)
	}
	return s, ok, nil
}

// sampleOne scrapes s, or gives the last sample of a drained instance
// that has gone.
func (t *serverTarget) sampleOne(ctx context.Context, s *scraper) (serverSample, error) {
	smp, err := s.sample(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		if t.last == nil {
			t.last = make(map[*scraper]serverSample)
		}
		t.last[s] = smp
		return smp, nil
	}
	if last, ok := t.last[s]; ok && t.drained[s] {
		return last, nil
	}
	return smp, err
}

// drain marks the instance at opsURL as drained: it is expected to go.
func (t *serverTarget) drain(opsURL string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.drained == nil {
		t.drained = make(map[*scraper]bool)
	}
	for _, s := range t.scrapers {
		if s != nil && s.url == newScraper(opsURL).url {
			t.drained[s] = true
		}
	}
}

// sampleLive is sample after a garbage collection on every instance: for
// before/after comparisons of the heap.
func (t *serverTarget) sampleLive(ctx context.Context) (serverSample, bool, error) {
	for _, s := range t.scrapers {
		s.collect(ctx)
	}
	return t.sample(ctx)
}
