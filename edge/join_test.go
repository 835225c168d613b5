package edge

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
)

// dialRefusal dials with token (and an optional room query) and returns
// the refusal; it fails the test if the upgrade happened.
func dialRefusal(t *testing.T, ts *testServer, token, room string) *client.DialError {
	t.Helper()
	url := ts.url
	if room != "" {
		url += "?room=" + room
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, token, client.Options{API: ts.api})
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded; want a refusal before the upgrade")
	}
	var de *client.DialError
	if !errors.As(err, &de) {
		t.Fatalf("Dial error = %v; want a *client.DialError", err)
	}
	return de
}

func signClaims(t *testing.T, key, secret string, c *auth.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJoinRefusedBeforeUpgrade(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxRoomParticipants = 1 })
	now := time.Now()
	claims := func(room string, exp time.Time, g auth.Grants) *auth.Claims {
		return &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: testKeys.Key, Subject: "mallory",
			ExpiresAt: jwt.NewNumericDate(exp)}, Room: room, Grants: g}
	}
	ts.dial(t, "occupied", "owner") // fills the one-participant room
	tests := []struct {
		name       string
		token      string
		room       string
		wantStatus int
		wantCode   string
	}{
		{"missing", "", "", http.StatusUnauthorized, "unauthorized"},
		{"garbage", "not-a-token", "", http.StatusUnauthorized, "unauthorized"},
		{"bad signature", signClaims(t, testKeys.Key, "another-secret-another-secret-0000", claims("demo", now.Add(time.Hour), bothGrants)), "", http.StatusUnauthorized, "unauthorized"},
		{"unknown key", signClaims(t, "", testKeys.Secret, &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "other", Subject: "m", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}, Room: "demo", Grants: bothGrants}), "", http.StatusUnauthorized, "unauthorized"},
		{"expired", signClaims(t, testKeys.Key, testKeys.Secret, claims("demo", now.Add(-time.Minute), bothGrants)), "", http.StatusUnauthorized, "unauthorized"},
		{"wrong room", ts.token(t, "demo", "mallory", bothGrants), "other", http.StatusForbidden, "forbidden"},
		{"no room", signClaims(t, testKeys.Key, testKeys.Secret, claims("", now.Add(time.Hour), bothGrants)), "", http.StatusForbidden, "forbidden"},
		{"no grant", signClaims(t, testKeys.Key, testKeys.Secret, claims("demo", now.Add(time.Hour), auth.Grants{})), "", http.StatusForbidden, "forbidden"},
		{"room full", ts.token(t, "occupied", "late", bothGrants), "", http.StatusForbidden, "room_full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			de := dialRefusal(t, ts, tt.token, tt.room)
			if de.Status != tt.wantStatus || de.Code != tt.wantCode || de.Message == "" {
				t.Errorf("Dial(%s) refused with %d %q %q; want %d %q and a message", tt.name, de.Status, de.Code, de.Message, tt.wantStatus, tt.wantCode)
			}
		})
	}
	if got := ts.counter(t, "media_joins", "result", "unauthorized"); got != 5 {
		t.Errorf("media_joins{result=unauthorized} = %d; want 5", got)
	}
	if got := ts.srv.Sessions().Len(); got != 1 {
		t.Errorf("sessions after refusals = %d; want 1 (the owner)", got)
	}
}

func TestJoinRefusedWhenFull(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxSessions = 1 })
	ts.dial(t, "demo", "first")
	de := dialRefusal(t, ts, ts.token(t, "demo", "second", bothGrants), "")
	if de.Status != http.StatusServiceUnavailable || de.Code != "full" || de.RetryAfter != 2*time.Second {
		t.Errorf("Dial at the session limit = %d %q retry %s; want 503 full retry 2s", de.Status, de.Code, de.RetryAfter)
	}
}

func TestJoinRefusedWhenTooManyRooms(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxRooms = 1 })
	ts.dial(t, "one", "a")
	de := dialRefusal(t, ts, ts.token(t, "two", "b", bothGrants), "")
	if de.Status != http.StatusServiceUnavailable || de.Code != "full" {
		t.Errorf("Dial beyond the room limit = %d %q; want 503 full", de.Status, de.Code)
	}
	if got := ts.counter(t, "media_joins", "result", "rooms_full"); got != 1 {
		t.Errorf("media_joins{result=rooms_full} = %d; want 1", got)
	}
}

func TestDevToken(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.APIKey, c.APISecret = "", "" })
	resp, err := http.Get(ts.http + "/v1/dev/token?room=demo&identity=alice")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body devToken
	if err := decodeJSON(resp, &body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/dev/token = %d, %v; want 200 with a token", resp.StatusCode, err)
	}
	if body.URL != ts.url {
		t.Errorf("dev token url = %q; want %q", body.URL, ts.url)
	}
	c := ts.dialWith(t, body.Token, client.Options{})
	if c.Joined().Participant.Identity != "alice" || c.Joined().Room != "demo" {
		t.Errorf("joined with the dev token as %+v; want alice in demo", c.Joined())
	}
	bad, err := http.Get(ts.http + "/v1/dev/token?room=a/b&identity=alice")
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /v1/dev/token with a bad room = %d; want 400", bad.StatusCode)
	}
}

func TestNoDevTokenWithSecret(t *testing.T) {
	ts := startServer(t, nil)
	resp, err := http.Get(ts.http + "/v1/dev/token?room=demo&identity=alice")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("GET /v1/dev/token with an API secret = 200; want it not served")
	}
}

// TestPlainGetRefusedWithJSON: a valid token on a request that is not a
// WebSocket handshake is refused with a JSON body, and costs no session.
func TestPlainGetRefusedWithJSON(t *testing.T) {
	ts := startServer(t, nil)
	resp, err := http.Get(ts.http + "/v1/rtc?access_token=" + ts.token(t, "demo", "alice", bothGrants))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body apiError
	if err := decodeJSON(resp, &body); err != nil || resp.StatusCode != http.StatusBadRequest || body.Code != "bad_request" {
		t.Errorf("plain GET /v1/rtc = %d %+v (%v); want 400 bad_request", resp.StatusCode, body, err)
	}
	waitFor(t, time.Second, "reservations released", func() bool { return ts.srv.admitted.Load() == 0 && ts.srv.rooms.len() == 0 })
}
