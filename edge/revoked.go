package edge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// maxRevoked bounds the tokens remembered as removed. Each entry is about
// a hundred bytes; a backend that removes more participants than this
// within their tokens' lifetimes makes the soonest-expiring entries be
// forgotten first, which is the least harm: those tokens stop working
// soonest anyway.
const maxRevoked = 10000

// revocations remembers the tokens of removed participants until each
// expires, so that a removed participant cannot join again with the token
// it was removed with (a new token from the backend is a new decision).
// In a fleet the directory remembers them too (revokeInFleet), for every
// instance; this memory stays the instance's own word, which a directory
// outage cannot take away.
// A token is known by the SHA-256 of its text: unique per token, whatever
// claims the backend puts in it, and not the credential itself.
type revocations struct {
	mu sync.Mutex           // guards m
	m  map[string]time.Time // token key -> expiry
}

func newRevocations() *revocations { return &revocations{m: make(map[string]time.Time)} }

// tokenKey is the key a token is remembered by.
func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// revoke remembers key until exp. When full it first forgets what has
// expired, then the entry that expires soonest.
func (r *revocations) revoke(key string, exp, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= maxRevoked {
		r.evict(now)
	}
	r.m[key] = exp
}

// evict makes room for one entry. The caller holds mu.
func (r *revocations) evict(now time.Time) {
	soonest, at := "", time.Time{}
	for k, exp := range r.m {
		if exp.Before(now) {
			delete(r.m, k)
			continue
		}
		if soonest == "" || exp.Before(at) {
			soonest, at = k, exp
		}
	}
	if len(r.m) >= maxRevoked {
		delete(r.m, soonest)
	}
}

// revoked reports whether key was revoked and has not expired.
func (r *revocations) revoked(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	exp, ok := r.m[key]
	if ok && exp.Before(now) {
		delete(r.m, key)
		return false
	}
	return ok
}

// revokeInFleet writes the revocation of key until exp to the fleet's
// directory, within placeTimeout; nil when there is no fleet.
func (srv *Server) revokeInFleet(ctx context.Context, key string, exp time.Time) error {
	if srv.routing == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, placeTimeout)
	defer cancel()
	return srv.routing.dir.Revoke(ctx, key, exp)
}

// revokedAnywhere reports whether the token of key was revoked here or,
// in a fleet, by any instance. A directory that cannot be asked counts
// as no revocation elsewhere (the store's error metric counts it): the
// join then fails at placement anyway unless its room is held here, and
// a room held here has usually had its removals made here, which it
// remembers itself.
func (srv *Server) revokedAnywhere(ctx context.Context, key string, now time.Time) bool {
	if srv.revoked.revoked(key, now) {
		return true
	}
	if srv.routing == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, placeTimeout)
	defer cancel()
	revoked, err := srv.routing.dir.Revoked(ctx, key)
	return err == nil && revoked
}
