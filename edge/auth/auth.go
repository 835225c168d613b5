// Package auth mints and verifies the access tokens that admit a
// participant to a room: HS256 JWTs signed with the API secret, whose issuer
// is the API key. The application backend mints them; the edge verifies
// them before it upgrades a signaling WebSocket, so a refused client never
// costs a session.
package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The dev key pair is public on purpose: an instance without
// MEDIA_API_SECRET uses it so the demo works out of the box, and the binary
// warns loudly that anyone can mint tokens for it.
const (
	DevAPIKey    = "devkey"
	DevAPISecret = "dev-secret-public-never-use-in-production"
)

// Bounds on what a token may carry. They keep every value a peer controls
// small before it reaches logs, maps and messages.
const (
	// MaxTokenLen bounds the token text checked at all, so a huge query
	// parameter is refused before any decoding.
	MaxTokenLen = 4096
	// MaxIdentityLen bounds the identity (the JWT subject), in bytes.
	MaxIdentityLen = 128
	// MaxRoomLen bounds the room name, in bytes.
	MaxRoomLen = 128
	// MinSecretLen is the shortest API secret accepted, in bytes: an
	// HS256 key should be at least as long as the hash's 256 bits
	// (RFC 7518, section 3.2), and a short one can be brute-forced from
	// any token it signed.
	MinSecretLen = 32
	// Leeway is the clock skew tolerated on exp and nbf between the
	// backend that mints and the instance that verifies.
	Leeway = 5 * time.Second
)

// Grants says what a participant may do in its room.
type Grants struct {
	// Publish allows sending tracks on the publisher connection.
	Publish bool `json:"publish"`
	// Subscribe allows receiving the other participants' tracks.
	Subscribe bool `json:"subscribe"`
	// PublishData allows sending on the data channels. Absent means
	// allowed, so tokens minted before the grant existed keep working, as
	// LiveKit's canPublishData does: read it with CanPublishData.
	PublishData Permission `json:"publish_data,omitzero"`
}

// CanPublishData reports whether the grants allow sending data.
func (g Grants) CanPublishData() bool { return g.PublishData.Allowed() }

// Permission is a grant that holds unless a token says false: its zero
// value, a claim absent from the token, allows. It is a value, not a
// *bool, so Grants stay comparable with ==.
type Permission uint8

// The values of a Permission.
const (
	PermissionAbsent  Permission = iota // not in the token: allowed
	PermissionDenied                    // false in the token
	PermissionGranted                   // true in the token
)

// Allow is the Permission of an explicit true or false.
func Allow(ok bool) Permission {
	if ok {
		return PermissionGranted
	}
	return PermissionDenied
}

// Allowed reports whether p allows: anything but an explicit false.
func (p Permission) Allowed() bool { return p != PermissionDenied }

// MarshalJSON writes true or false (an absent one is left out by omitzero).
func (p Permission) MarshalJSON() ([]byte, error) {
	if p == PermissionDenied {
		return []byte("false"), nil
	}
	return []byte("true"), nil
}

// UnmarshalJSON reads true, false or null (absent); anything else is an
// error, so a token with a malformed grant is refused.
func (p *Permission) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*p = PermissionGranted
	case "false":
		*p = PermissionDenied
	case "null":
		*p = PermissionAbsent
	default:
		return fmt.Errorf("auth: a grant must be true or false, got %.20s", b)
	}
	return nil
}

// Claims is the payload of an access token: the registered claims (iss is
// the API key, sub the identity, exp the expiry) plus the room and grants.
type Claims struct {
	jwt.RegisteredClaims
	Room   string `json:"room"`
	Grants Grants `json:"grants"`
}

// Identity is the participant's identity: the token's subject.
func (c *Claims) Identity() string { return c.Subject }

// KeyPair is an API key and the secret that signs its tokens.
type KeyPair struct {
	Key    string
	Secret string
}

// DevKeyPair returns the fixed, public key pair of dev mode.
func DevKeyPair() KeyPair { return KeyPair{Key: DevAPIKey, Secret: DevAPISecret} }

// Token describes an access token to mint.
type Token struct {
	Room     string
	Identity string
	Grants   Grants
	// TTL is how long the token is valid from its issue time; it must be
	// positive.
	TTL time.Duration
}

// Mint signs an access token for t with k, issued at now. It checks t as
// Verify would, so it never produces a token the edge refuses on shape.
func (k KeyPair) Mint(t Token, now time.Time) (string, error) {
	rc, err := k.registered(t.Identity, t.TTL, now)
	if err != nil {
		return "", err
	}
	c := Claims{RegisteredClaims: rc, Room: t.Room, Grants: t.Grants}
	if err := checkShape(&c); err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return k.sign(c)
}

// registered returns the registered claims every token of k carries:
// issuer k's key, subject, issued and valid from now, expiring after
// ttl, which must be positive.
func (k KeyPair) registered(subject string, ttl time.Duration, now time.Time) (jwt.RegisteredClaims, error) {
	if err := k.check(); err != nil {
		return jwt.RegisteredClaims{}, err
	}
	if ttl <= 0 {
		return jwt.RegisteredClaims{}, fmt.Errorf("auth: mint: ttl must be positive, got %s", ttl)
	}
	return jwt.RegisteredClaims{
		Issuer:    k.Key,
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}, nil
}

// sign signs c with k's secret (HS256).
func (k KeyPair) sign(c jwt.Claims) (string, error) {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(k.Secret))
	if err != nil {
		return "", fmt.Errorf("auth: mint: sign: %w", err)
	}
	return s, nil
}

func (k KeyPair) check() error {
	if k.Key == "" || k.Secret == "" {
		return errors.New("auth: key pair needs both a key and a secret")
	}
	return nil
}
