package turn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // the TURN REST API scheme fixes HMAC-SHA1; it is a MAC, not a hash of secrets
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	pionturn "github.com/pion/turn/v4"
)

// expirySkew tolerates clocks of the minting backend and this instance that
// disagree slightly, when a credential claims an expiry beyond the TTL.
const expirySkew = time.Minute

// ICEServer is one entry of the ICE server list handed to a client, in the
// browser's RTCIceServer shape.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// credentials mints and checks TURN REST API credentials: the username is
// "expiry:identity" (expiry in unix seconds) and the password is
// base64(HMAC-SHA1(secret, username)), so any holder of the secret (this
// instance, or an application backend) can mint them without a shared
// store, and the relay checks them without one.
type credentials struct {
	secret []byte
	realm  string
	ttl    time.Duration
}

func newCredentials(cfg Config) (credentials, error) {
	secret := []byte(cfg.Secret)
	if cfg.SecretGenerated() {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return credentials{}, fmt.Errorf("turn: generate dev secret: %w", err)
		}
	}
	return credentials{secret: secret, realm: cfg.Realm, ttl: cfg.CredentialTTL}, nil
}

// mint returns a credential for identity that expires ttl after now.
func (c credentials) mint(identity string, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(c.ttl).Unix(), 10) + ":" + identity
	return username, c.password(username)
}

// password is the REST API password of username.
func (c credentials) password(username string) string {
	mac := hmac.New(sha1.New, c.secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// key is the long-term credential key (RFC 8489 section 9.2.2) that Pion
// checks the request's MESSAGE-INTEGRITY with.
func (c credentials) key(username, realm string) []byte {
	return pionturn.GenerateAuthKey(username, realm, c.password(username))
}

// parseUsername splits a REST API username into its expiry and identity.
// The identity may itself contain colons; the expiry may not.
func parseUsername(username string) (expiry time.Time, identity string, ok bool) {
	ts, identity, found := strings.Cut(username, ":")
	if !found || identity == "" || ts == "" {
		return time.Time{}, "", false
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || secs <= 0 {
		return time.Time{}, "", false
	}
	return time.Unix(secs, 0), identity, true
}

// Auth failure reasons, the reason attribute of media_turn_auth_failures.
const (
	authMalformed    = "malformed"      // not "expiry:identity"
	authExpired      = "expired"        // expiry passed, and no allocation of its own to refresh
	authTooFar       = "expiry_too_far" // expiry beyond the configured TTL: not minted under this policy
	authWrongRealm   = "wrong_realm"    // a realm other than ours
	authBadIntegrity = "bad_integrity"  // MESSAGE-INTEGRITY does not match: forged or wrong password
)

// check returns why a request with username and realm from src must be
// refused, or "" when its key may be computed. An expired credential is
// still good for the allocation it created (same transport, client address
// and username), for at most MaxCredentialTTL past its expiry: refreshes,
// permissions and channel binds of a live allocation must not fail
// mid-call when the credential's TTL passes, but no allocation lives on a
// credential forever.
func (s *Server) check(transport, username, realm string, src net.Addr) string {
	if realm != s.creds.realm {
		return authWrongRealm
	}
	expiry, _, ok := parseUsername(username)
	if !ok {
		return authMalformed
	}
	now := s.now()
	if expiry.After(now.Add(s.creds.ttl + expirySkew)) {
		return authTooFar
	}
	if !expiry.After(now) && (now.Sub(expiry) > MaxCredentialTTL || s.ledger.username(allocKey{transport, src.String()}) != username) {
		return authExpired
	}
	return ""
}

// authHandler is Pion's AuthHandler for one transport.
func (s *Server) authHandler(transport string) pionturn.AuthHandler {
	return func(username, realm string, src net.Addr) ([]byte, bool) {
		if reason := s.check(transport, username, realm, src); reason != "" {
			s.authFailed(transport, reason, src)
			return nil, false
		}
		return s.creds.key(username, realm), true
	}
}

// authFailed counts a refused credential and charges its source's
// unauthenticated-request budget, so guessing is rate limited too.
func (s *Server) authFailed(transport, reason string, src net.Addr) {
	s.metrics.authFailure(transport, reason)
	if ip, ok := addrIP(src); ok && transport == transportUDP {
		s.limiter.charge(ip)
	}
	s.log.Debug("turn_auth_refused", "transport", transport, "reason", reason)
}
