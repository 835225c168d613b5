package fleet

import (
	"context"
	"errors"
	"time"
)

// Revocations shared by the fleet: the server API removes a participant
// on the room's owner, and the token it joined with must be refused by
// every instance, since the room may later live on another (a drain, or
// the room emptied and placed anew). edge keeps its own memory too, so
// that a store outage forgets nothing it revoked itself.

// maxRevokeKey bounds a revocation key: edge's are 32 hex digits.
const maxRevokeKey = 128

// Revoke remembers key as revoked across the fleet until until. It
// returns ErrUnavailable (wrapped) when the store cannot be reached.
func (f *Fleet) Revoke(ctx context.Context, key string, until time.Time) error {
	if key == "" || len(key) > maxRevokeKey {
		return errors.New("fleet: revoke: key is empty or too long")
	}
	_, err := timed(f.m, opRevoke, func() (struct{}, error) { return struct{}{}, f.store.Revoke(ctx, key, until) })
	return wrapUnavailable(err)
}

// Revoked reports whether key was revoked by any instance and has not
// expired; ErrUnavailable (wrapped) when the store cannot be reached.
func (f *Fleet) Revoked(ctx context.Context, key string) (bool, error) {
	if key == "" || len(key) > maxRevokeKey {
		return false, nil
	}
	ok, err := timed(f.m, opRevoked, func() (bool, error) { return f.store.Revoked(ctx, key) })
	return ok, wrapUnavailable(err)
}
