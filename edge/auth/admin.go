package auth

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// AdminGrants says what the application's backend may do through the
// server API. They are distinct from a participant's Grants: a token
// carries one or the other, and a participant token on the API is
// refused (403), as an admin token is at /v1/rtc (its room is empty).
type AdminGrants struct {
	// RoomList allows listing the instance's rooms.
	RoomList bool `json:"room_list,omitempty"`
	// RoomAdmin allows everything about a room: listing its
	// participants, removing one, muting a track, setting metadata,
	// closing the room.
	RoomAdmin bool `json:"room_admin,omitempty"`
}

// AdminClaims is the payload of an admin token: the registered claims
// (iss the API key, sub a name for the caller, for logs) and the admin
// grants.
type AdminClaims struct {
	jwt.RegisteredClaims
	Admin AdminGrants `json:"admin"`
}

// ErrNoAdminGrant refuses an authentic token that carries no admin
// grant, a participant's token for instance: 403.
var ErrNoAdminGrant = &Error{Reason: "no_admin_grant", Forbidden: true}

// AdminToken describes an admin token to mint.
type AdminToken struct {
	// Name identifies the caller in the instance's logs: the subject.
	Name   string
	Grants AdminGrants
	// TTL is how long the token is valid from its issue time; positive.
	TTL time.Duration
}

// MintAdmin signs an admin token for t with k, issued at now.
func (k KeyPair) MintAdmin(t AdminToken, now time.Time) (string, error) {
	rc, err := k.registered(t.Name, t.TTL, now)
	if err != nil {
		return "", err
	}
	c := AdminClaims{RegisteredClaims: rc, Admin: t.Grants}
	if err := checkAdminShape(&c); err != nil {
		return "", fmt.Errorf("auth: mint admin: %w", err)
	}
	return k.sign(c)
}

// VerifyAdmin checks an admin token as Verify checks a participant's
// (size, HS256 by k's secret, issuer, expiry with Leeway), then that it
// grants something of the server API. Its errors wrap the Err values;
// ErrNoAdminGrant is the one a participant token gets.
func (k KeyPair) VerifyAdmin(token string, now time.Time) (*AdminClaims, error) {
	var c AdminClaims
	if err := k.parse(token, now, &c); err != nil {
		return nil, err
	}
	if err := checkAdminShape(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

func checkAdminShape(c *AdminClaims) error {
	if len(c.Subject) > MaxIdentityLen || !utf8.ValidString(c.Subject) {
		return fmt.Errorf("%w: name must be at most %d bytes of UTF-8", ErrBadIdentity, MaxIdentityLen)
	}
	if !c.Admin.RoomList && !c.Admin.RoomAdmin {
		return fmt.Errorf("%w: token grants neither room_list nor room_admin", ErrNoAdminGrant)
	}
	return nil
}
