package edge

import (
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
