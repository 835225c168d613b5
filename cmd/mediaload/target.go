package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/auth"
)

// serverTarget is the instance under load: where to signal, where to
// scrape, how to get tokens, and (with -spawn) the process itself.
type serverTarget struct {
	base    string // HTTP base URL
	rtc     string // signaling WebSocket URL
	scrape  *scraper
	api     *webrtc.API
	tokens  *tokenSource
	spawned *spawned

	// clientLog receives the participants' client diagnostics (a server
	// offer the client could not answer, a candidate it could not add),
	// and Pion's warnings go to clientDiag too, which counts them all and
	// shows the first few.
	clientLog  *slog.Logger
	clientDiag *diagWriter
	events     serverEvents
}

// openTarget resolves the instance: the one -spawn starts, or -url. The
// spawned instance is sized for maxSessions participants.
func openTarget(ctx context.Context, cfg config, maxSessions int, pr *progress) (*serverTarget, error) {
	t := &serverTarget{base: cfg.url}
	opsURL := cfg.opsURL
	if cfg.spawn != "" {
		s, err := spawn(ctx, cfg.spawn, maxSessions+16)
		if err != nil {
			return nil, err
		}
		t.spawned, t.base, opsURL = s, s.httpURL, s.opsURL
		pr.printf("spawned %s: signaling %s, ops %s", cfg.spawn, s.httpURL, s.opsURL)
	}
	t.rtc = rtcURL(t.base)
	t.scrape = newScraper(opsURL)
	t.clientDiag = &diagWriter{w: pr.writer(), show: 10}
	t.clientLog = slog.New(slog.NewTextHandler(t.clientDiag, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	if t.api, err = newLoadAPI(isLoopbackURL(t.base), cfg.nack, t.clientDiag); err != nil {
		t.close()
		return nil, err
	}
	t.tokens = newTokenSource(cfg, t.base)
	return t, nil
}

// finish copies what the participants' clients saw into the report. Our
// participants are well behaved and leave by themselves, so any `error`
// or `leave` from the server means something went wrong: the run fails.
func (t *serverTarget) finish(rep *Report) {
	rep.ClientDiagnostics = t.clientDiag.n.Load()
	rep.ServerEvents = t.events.snapshot()
	for _, k := range slices.Sorted(maps.Keys(rep.ServerEvents)) {
		rep.fail("the server sent %s %d times", k, rep.ServerEvents[k])
	}
}

// close stops a spawned instance (it drains on SIGTERM).
func (t *serverTarget) close() error {
	if t.spawned == nil {
		return nil
	}
	return t.spawned.stop()
}

// sample scrapes the instance, or returns ok=false when scraping is off.
func (t *serverTarget) sample(ctx context.Context) (serverSample, bool, error) {
	if t.scrape == nil {
		return serverSample{}, false, nil
	}
	s, err := t.scrape.sample(ctx)
	return s, err == nil, err
}

// sampleLive is sample after a garbage collection on the instance: for
// before/after comparisons of the heap.
func (t *serverTarget) sampleLive(ctx context.Context) (serverSample, bool, error) {
	if t.scrape != nil {
		t.scrape.collect(ctx)
	}
	return t.sample(ctx)
}

// diagWriter passes the first show lines on to w and counts them all,
// except the benign ones.
type diagWriter struct {
	w    io.Writer // nil: count only
	show int64
	n    atomic.Int64
}

// benignDiagnostics are log lines every join or leave produces: ICE
// trying to check before the trickled candidates have arrived, and
// streams accepted while the connection closes.
var benignDiagnostics = [][]byte{[]byte("Failed to ping without candidate pairs"), []byte("stream is already closed")}

func (d *diagWriter) Write(p []byte) (int, error) {
	for _, b := range benignDiagnostics {
		if bytes.Contains(p, b) {
			return len(p), nil
		}
	}
	if d.n.Add(1) <= d.show && d.w != nil {
		_, _ = fmt.Fprintf(d.w, "client: %s", p)
	}
	return len(p), nil
}

// tokenTTL is how long a minted token lives: long enough for any join of
// the run, short enough not to matter if one leaks from a log.
const tokenTTL = 10 * time.Minute

// tokenSource mints access tokens with the API key pair (the dev pair when
// no secret is given), or fetches them from the instance's dev endpoint.
type tokenSource struct {
	keys   auth.KeyPair
	devURL string // set with -dev-token
	http   *http.Client
}

func newTokenSource(cfg config, base string) *tokenSource {
	ts := &tokenSource{keys: auth.DevKeyPair(), http: &http.Client{Timeout: 10 * time.Second}}
	if cfg.apiSecret != "" {
		ts.keys = auth.KeyPair{Key: cfg.apiKey, Secret: cfg.apiSecret}
	}
	if cfg.devToken {
		ts.devURL = strings.TrimRight(base, "/") + "/v1/dev/token"
	}
	return ts
}

// token returns a token for identity in room; subscribing is always
// granted, publishing when publish is set.
func (ts *tokenSource) token(ctx context.Context, room, identity string, publish bool) (string, error) {
	if ts.devURL != "" {
		return ts.fetch(ctx, room, identity)
	}
	tok, err := ts.keys.Mint(auth.Token{
		Room: room, Identity: identity, TTL: tokenTTL,
		Grants: auth.Grants{Publish: publish, Subscribe: true},
	}, time.Now())
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", identity, err)
	}
	return tok, nil
}

// fetch asks /v1/dev/token (dev mode only; it grants publish and subscribe).
func (ts *tokenSource) fetch(ctx context.Context, room, identity string) (string, error) {
	u := ts.devURL + "?" + url.Values{"room": {room}, "identity": {identity}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	resp, err := ts.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if err != nil {
		return "", fmt.Errorf("dev token: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dev token: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Token == "" {
		return "", fmt.Errorf("dev token: no token in the answer")
	}
	return body.Token, nil
}
