package edge

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/media-service/media-service/edge/auth"
)

// devTokenTTL is the lifetime of tokens from /v1/dev/token: a working
// day of demo use.
const devTokenTTL = 8 * time.Hour

// keys is the key pair tokens are checked with: the configured one, or the
// public dev pair in dev mode.
func (c Config) keys() auth.KeyPair {
	if c.DevMode() {
		return auth.DevKeyPair()
	}
	return auth.KeyPair{Key: c.APIKey, Secret: c.APISecret}
}

// devToken is the answer of /v1/dev/token.
type devToken struct {
	Token string `json:"token"`
	URL   string `json:"url"`
}

// handleDevToken mints a token with both grants for the demo page. It is
// routed only in dev mode, where the key pair is public anyway.
func (srv *Server) handleDevToken(c echo.Context) error {
	tok := auth.Token{Room: c.QueryParam("room"), Identity: c.QueryParam("identity"),
		Grants: auth.Grants{Publish: true, Subscribe: true}, TTL: devTokenTTL}
	s, err := srv.keys.Mint(tok, time.Now())
	if err != nil {
		return c.JSON(http.StatusBadRequest, apiError{Code: "bad_request",
			Message: "room must be 1 to 128 of [A-Za-z0-9_.-] and identity 1 to 128 bytes"})
	}
	return c.JSON(http.StatusOK, devToken{Token: s, URL: rtcURL(c.Request())})
}

// rtcURL is the signaling URL as the client reached this instance:
// wss behind TLS (directly or at a proxy that says so), ws otherwise.
func rtcURL(r *http.Request) string {
	scheme := "ws"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "wss"
	}
	return scheme + "://" + r.Host + "/v1/rtc"
}
