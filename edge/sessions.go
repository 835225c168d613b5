package edge

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Sessions is the instance's session manager: the sessionSet of *Session
// (in its methods, S is *Session).
type Sessions struct{ sessionSet[*Session] }

// managed is what the manager needs of what it holds.
type managed interface {
	ID() string
	// Close ends it for reason and returns once it has fully closed,
	// having removed itself from the manager.
	Close(reason string)
}

// sessionSet is the sharded session manager. A session lives in the shard
// its id hashes to; each shard has its own lock, so joins, leaves and
// look-ups of different sessions rarely contend. The count is an atomic kept
// beside the shards so Len never takes a lock. It knows of a session only
// its id and its Close.
type sessionSet[S managed] struct {
	seed   maphash.Seed
	shards []sessionShard[S]
	count  atomic.Int64
	ended  atomic.Int64 // sessions removed since start; drain counts with it

	emptyMu sync.Mutex    // guards empty
	empty   chan struct{} // closed and replaced each time the count reaches zero
}

type sessionShard[S managed] struct {
	mu sync.RWMutex // guards m
	m  map[string]S
}

// NewSessions returns a manager with n shards (at least 1).
func NewSessions(n int) *Sessions {
	m := &Sessions{}
	m.init(n)
	return m
}

// init makes m's n shards (at least 1); m is not yet shared.
func (m *sessionSet[S]) init(n int) {
	n = max(n, 1)
	m.seed, m.shards, m.empty = maphash.MakeSeed(), make([]sessionShard[S], n), make(chan struct{})
	for i := range m.shards {
		m.shards[i].m = make(map[string]S)
	}
}

func (m *sessionSet[S]) shard(id string) *sessionShard[S] {
	return &m.shards[maphash.String(m.seed, id)%uint64(len(m.shards))]
}

// Add stores s under its id. It reports false, storing nothing, when the id
// is taken.
func (m *sessionSet[S]) Add(s S) bool {
	sh := m.shard(s.ID())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[s.ID()]; ok {
		return false
	}
	sh.m[s.ID()] = s
	m.count.Add(1)
	return true
}

// Get returns the session with that id.
func (m *sessionSet[S]) Get(id string) (S, bool) {
	sh := m.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	s, ok := sh.m[id]
	return s, ok
}

// Remove deletes the session with that id, if it is there, and reports
// whether it was.
func (m *sessionSet[S]) Remove(id string) bool {
	sh := m.shard(id)
	sh.mu.Lock()
	_, ok := sh.m[id]
	delete(sh.m, id)
	sh.mu.Unlock()
	if !ok {
		return false
	}
	m.ended.Add(1)
	if m.count.Add(-1) == 0 {
		m.emptyMu.Lock()
		close(m.empty)
		m.empty = make(chan struct{})
		m.emptyMu.Unlock()
	}
	return true
}

// Len returns the number of sessions.
func (m *sessionSet[S]) Len() int { return int(m.count.Load()) }

// All returns a snapshot of every session, in no particular order.
func (m *sessionSet[S]) All() []S {
	out := make([]S, 0, m.Len())
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for _, s := range sh.m {
			out = append(out, s)
		}
		sh.mu.RUnlock()
	}
	return out
}

// Close closes every session with reason and returns how many it closed.
// Each session removes itself from the manager as it closes. Sessions
// close in parallel: each waits for its client's last words and its
// PeerConnections, and one at a time would not fit a drain's deadline.
func (m *sessionSet[S]) Close(reason string) int {
	all := m.All()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(func() { s.Close(reason) })
	}
	wg.Wait()
	return len(all)
}

// WaitEmpty blocks until no session is left or ctx is done.
func (m *sessionSet[S]) WaitEmpty(ctx context.Context) error {
	for m.Len() > 0 {
		m.emptyMu.Lock()
		ch := m.empty
		m.emptyMu.Unlock()
		if m.Len() == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
