package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/media-service/media-service/edge/auth"
)

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

func newTokenSource(cfg Config, base string) *tokenSource {
	ts := &tokenSource{keys: auth.DevKeyPair(), http: &http.Client{Timeout: 10 * time.Second}}
	if cfg.APISecret != "" {
		ts.keys = auth.KeyPair{Key: cfg.APIKey, Secret: cfg.APISecret}
	}
	if cfg.DevToken {
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
