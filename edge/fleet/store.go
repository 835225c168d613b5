package fleet

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"time"
)

// Store holds the fleet's registry and room directory. Its methods are
// safe for concurrent use. Every write of a room entry compares the entry
// in force with the one the caller expects, so a writer holding a stale
// view cannot overwrite a newer claim.
type Store interface {
	// Register writes inst under inst.ID with a lease of ttl, replacing
	// what was there. It reports whether a live lease was there before
	// (false on the first registration and after a lapse).
	Register(ctx context.Context, inst Instance, ttl time.Duration) (renewed bool, err error)
	// Deregister deletes the instance's lease.
	Deregister(ctx context.Context, id string) error
	// Instance returns the registered instance id; false if it has no
	// live lease.
	Instance(ctx context.Context, id string) (Instance, bool, error)
	// Instances returns every instance with a live lease, in no order.
	Instances(ctx context.Context) ([]Instance, error)

	// Lookup returns room's entry; false if it has none.
	Lookup(ctx context.Context, room string) (Claim, bool, error)
	// Claim writes c as room's entry for ttl if the entry in force is old
	// (the zero Claim: if the room has no entry). It returns the entry in
	// force afterwards: c if the write happened, else the other one (the
	// zero Claim if the room has none).
	Claim(ctx context.Context, room string, old, c Claim, ttl time.Duration) (Claim, error)
	// Renew extends to ttl the entry of each room of claims that is still
	// the claim given, in one round trip, and returns the rooms whose entry
	// is not (any more).
	Renew(ctx context.Context, claims map[string]Claim, ttl time.Duration) (stale []string, err error)
	// Release deletes room's entry if it is still c.
	Release(ctx context.Context, room string, c Claim) (bool, error)
	// Rooms returns the entries of up to limit rooms, by room, in no
	// order: every room when there are no more than limit.
	Rooms(ctx context.Context, limit int) (map[string]Claim, error)

	// Revoke remembers key (a token's, chosen by edge) as revoked until
	// until; a key whose until has passed is not written.
	Revoke(ctx context.Context, key string, until time.Time) error
	// Revoked reports whether key is remembered as revoked now.
	Revoked(ctx context.Context, key string) (bool, error)

	// Close releases the store's connections.
	Close() error
}

// Claim is a room's directory entry: its owner and the fencing token that
// makes this claim's value unique, so that only its writer can renew,
// release or move it.
type Claim struct {
	Owner string `json:"owner"`
	URL   string `json:"url"`
	Token string `json:"token"`

	// raw is an entry the store holds that is not a claim's encoding
	// (written by something else): it names no owner, so Place replaces
	// it, comparing it byte for byte like any other.
	raw string
}

// IsZero reports whether c is the zero Claim (no entry).
func (c Claim) IsZero() bool { return c == Claim{} }

// newClaim is a claim of a room for inst with a fresh random token.
func newClaim(inst Instance) Claim {
	return Claim{Owner: inst.ID, URL: inst.URL, Token: rand.Text()}
}

// encode is c as the store holds it; "" for the zero Claim. The encoding
// is deterministic (fields in declaration order), so entries compare as
// bytes.
func (c Claim) encode() string {
	if c.raw != "" {
		return c.raw
	}
	if c.IsZero() {
		return ""
	}
	b, _ := json.Marshal(c) // three strings cannot fail
	return string(b)
}

// decodeClaim parses an entry the store holds. One that is not a claim's
// encoding is kept raw, so it can be replaced.
func decodeClaim(s string) Claim {
	var c Claim
	if err := json.Unmarshal([]byte(s), &c); err != nil || c.encode() != s {
		return Claim{raw: s}
	}
	return c
}
