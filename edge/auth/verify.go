package auth

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Error is a refused token. Reason is a short word from a fixed set, fit
// for logs and metric attributes; Forbidden separates a token that is
// authentic but does not permit the join (HTTP 403) from one that does not
// prove who the client is (HTTP 401).
type Error struct {
	Reason    string
	Forbidden bool
}

func (e *Error) Error() string { return "auth: token " + e.Reason }

// The refusals Verify returns (wrapped with detail; match with errors.Is).
var (
	ErrMissing      = &Error{Reason: "missing"}
	ErrTooLong      = &Error{Reason: "too_long"}
	ErrMalformed    = &Error{Reason: "malformed"}
	ErrUnknownKey   = &Error{Reason: "unknown_key"}
	ErrSignature    = &Error{Reason: "bad_signature"}
	ErrExpired      = &Error{Reason: "expired"}
	ErrNotYetValid  = &Error{Reason: "not_yet_valid"}
	ErrBadIdentity  = &Error{Reason: "bad_identity"}
	ErrBadRoom      = &Error{Reason: "bad_room", Forbidden: true}
	ErrNoGrant      = &Error{Reason: "no_grant", Forbidden: true}
	ErrRoomMismatch = &Error{Reason: "room_mismatch", Forbidden: true}
)

// Verify checks token against k at now: size, HS256 signature by k's
// secret, issuer k's key, expiry (required) and not-before with Leeway,
// then the shape of the claims. It returns the claims of an acceptable
// token, or an error wrapping one of the Err values above.
func (k KeyPair) Verify(token string, now time.Time) (*Claims, error) {
	var c Claims
	if err := k.parse(token, now, &c); err != nil {
		return nil, err
	}
	if err := checkShape(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

// parse checks what every token shares (size, HS256 by k's secret, issuer
// k's key, expiry required, not-before with Leeway) and decodes its
// claims into c.
func (k KeyPair) parse(token string, now time.Time, c jwt.Claims) error {
	if token == "" {
		return ErrMissing
	}
	if len(token) > MaxTokenLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, len(token), MaxTokenLen)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	_, err := p.ParseWithClaims(token, c, func(t *jwt.Token) (any, error) {
		if iss, _ := t.Claims.GetIssuer(); iss != k.Key {
			return nil, ErrUnknownKey
		}
		return []byte(k.Secret), nil
	})
	if err != nil {
		return classify(err)
	}
	return nil
}

// classify maps the jwt library's errors onto our fixed reasons.
func classify(err error) error {
	var reason *Error
	switch {
	case errors.Is(err, ErrUnknownKey):
		reason = ErrUnknownKey
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = ErrSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		reason = ErrNotYetValid
	default:
		reason = ErrMalformed
	}
	return fmt.Errorf("%w: %v", reason, err)
}

// checkShape checks what the signature cannot: that identity and room are
// values the edge can safely carry, and that the token grants something.
func checkShape(c *Claims) error {
	if c.Subject == "" || len(c.Subject) > MaxIdentityLen || !utf8.ValidString(c.Subject) {
		return fmt.Errorf("%w: identity must be 1 to %d bytes of UTF-8", ErrBadIdentity, MaxIdentityLen)
	}
	if !ValidRoom(c.Room) {
		return fmt.Errorf("%w: room must be 1 to %d bytes of [A-Za-z0-9_.-]", ErrBadRoom, MaxRoomLen)
	}
	if !c.Grants.Publish && !c.Grants.Subscribe {
		return fmt.Errorf("%w: token grants neither publish nor subscribe", ErrNoGrant)
	}
	return nil
}

// ValidRoom reports whether name is a room name tokens may carry: 1 to
// MaxRoomLen bytes of letters, digits, '_', '.' and '-'.
func ValidRoom(name string) bool {
	if name == "" || len(name) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '_', b == '.', b == '-':
		default:
			return false
		}
	}
	return true
}
