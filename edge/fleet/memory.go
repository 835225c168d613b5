package fleet

import (
	"context"
	"sync"
	"time"
)

// MemoryStore is a [Store] in the process: the directory of an instance
// that runs alone, and of several [Fleet]s in one process. Leases expire
// by the process's clock, read at each call.
type MemoryStore struct {
	mu        sync.Mutex // guards instances, rooms and revoked
	instances map[string]leased[Instance]
	rooms     map[string]leased[Claim]
	revoked   map[string]time.Time // key -> until; the expired are dropped by each Revoke
}

// leased is a value and the time its lease ends.
type leased[T any] struct {
	v       T
	expires time.Time
}

func (l leased[T]) live(now time.Time) bool { return now.Before(l.expires) }

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{instances: map[string]leased[Instance]{}, rooms: map[string]leased[Claim]{}, revoked: map[string]time.Time{}}
}

// Register implements [Store].
func (s *MemoryStore) Register(_ context.Context, inst Instance, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	old, ok := s.instances[inst.ID]
	s.instances[inst.ID] = leased[Instance]{inst, now.Add(ttl)}
	return ok && old.live(now), nil
}

// Deregister implements [Store].
func (s *MemoryStore) Deregister(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.instances, id)
	return nil
}

// Instance implements [Store].
func (s *MemoryStore) Instance(_ context.Context, id string) (Instance, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok || !in.live(time.Now()) {
		return Instance{}, false, nil
	}
	return in.v, true, nil
}

// Instances implements [Store].
func (s *MemoryStore) Instances(context.Context) ([]Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []Instance
	for id, in := range s.instances {
		if !in.live(now) {
			delete(s.instances, id)
			continue
		}
		out = append(out, in.v)
	}
	return out, nil
}

// Lookup implements [Store].
func (s *MemoryStore) Lookup(_ context.Context, room string) (Claim, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.entry(room)
	return c, !c.IsZero(), nil
}

// Claim implements [Store].
func (s *MemoryStore) Claim(_ context.Context, room string, old, c Claim, ttl time.Duration) (Claim, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.entry(room)
	if cur != old {
		return cur, nil
	}
	s.rooms[room] = leased[Claim]{c, time.Now().Add(ttl)}
	return c, nil
}

// Renew implements [Store].
func (s *MemoryStore) Renew(_ context.Context, claims map[string]Claim, ttl time.Duration) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var stale []string
	for room, c := range claims {
		if c.IsZero() || s.entry(room) != c {
			stale = append(stale, room)
			continue
		}
		s.rooms[room] = leased[Claim]{c, time.Now().Add(ttl)}
	}
	return stale, nil
}

// Release implements [Store].
func (s *MemoryStore) Release(_ context.Context, room string, c Claim) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.IsZero() || s.entry(room) != c {
		return false, nil
	}
	delete(s.rooms, room)
	return true, nil
}

// Close implements [Store]; it does nothing.
func (s *MemoryStore) Close() error { return nil }

// entry is room's live entry, the zero Claim if none; an expired one is
// removed. s.mu is held.
func (s *MemoryStore) entry(room string) Claim {
	e, ok := s.rooms[room]
	if ok && !e.live(time.Now()) {
		delete(s.rooms, room)
		return Claim{}
	}
	return e.v
}

// Rooms implements [Store].
func (s *MemoryStore) Rooms(_ context.Context, limit int) (map[string]Claim, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Claim)
	for room := range s.rooms {
		if len(out) >= limit {
			break
		}
		if c := s.entry(room); !c.IsZero() {
			out[room] = c
		}
	}
	return out, nil
}

// Revoke implements [Store].
func (s *MemoryStore) Revoke(_ context.Context, key string, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for k, u := range s.revoked {
		if !now.Before(u) {
			delete(s.revoked, k)
		}
	}
	if now.Before(until) {
		s.revoked[key] = until
	}
	return nil
}

// Revoked implements [Store].
func (s *MemoryStore) Revoked(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.revoked[key]
	return ok && time.Now().Before(until), nil
}
