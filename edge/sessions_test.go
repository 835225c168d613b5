package edge

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// bareSession is what the manager's tests hold: an id, and a Close that
// removes it from its manager, as a session's teardown does.
type bareSession struct {
	id      string
	m       *bareSessions
	closeMu sync.Once
}

type bareSessions = sessionSet[*bareSession]

func newBareSessions(n int) *bareSessions {
	m := &bareSessions{}
	m.init(n)
	return m
}

func newBare(id string, m *bareSessions) *bareSession { return &bareSession{id: id, m: m} }

func (b *bareSession) ID() string { return b.id }

func (b *bareSession) Close(string) { b.closeMu.Do(func() { b.m.Remove(b.id) }) }

func TestSessionsAddGetRemove(t *testing.T) {
	m := newBareSessions(4)
	a, b := newBare("a", m), newBare("b", m)
	if !m.Add(a) || !m.Add(b) {
		t.Fatal("Add of new ids = false; want true")
	}
	if m.Add(newBare("a", m)) {
		t.Error("Add of a taken id = true; want false")
	}
	if got, ok := m.Get("a"); !ok || got != a {
		t.Errorf("Get(a) = %v, %v; want the session, true", got, ok)
	}
	if got := m.Len(); got != 2 {
		t.Errorf("Len() = %d; want 2", got)
	}
	if got := len(m.All()); got != 2 {
		t.Errorf("len(All()) = %d; want 2", got)
	}
	if !m.Remove("a") || m.Remove("a") {
		t.Error("Remove(a) twice = first true then false; want exactly that")
	}
	if _, ok := m.Get("a"); ok {
		t.Error("Get(a) after Remove found it; want gone")
	}
	if got := m.Close("test"); got != 1 {
		t.Errorf("Close() = %d; want 1", got)
	}
	if got := m.Len(); got != 0 {
		t.Errorf("Len() after Close = %d; want 0", got)
	}
}

func TestSessionsWaitEmpty(t *testing.T) {
	m := newBareSessions(8)
	for i := range 50 {
		m.Add(newBare(fmt.Sprint(i), m))
	}
	done := make(chan error, 1)
	go func() { done <- m.WaitEmpty(context.Background()) }()
	var wg sync.WaitGroup
	for _, s := range m.All() {
		wg.Go(func() { s.Close("left") })
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatalf("WaitEmpty() = %v; want nil once every session left", err)
	}

	m.Add(newBare("stuck", m))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := m.WaitEmpty(ctx); err != context.DeadlineExceeded {
		t.Errorf("WaitEmpty() with a session left = %v; want %v", err, context.DeadlineExceeded)
	}
}

// mutexSessions is the single-lock map the sharded manager is measured
// against.
type mutexSessions struct {
	mu sync.RWMutex
	m  map[string]*bareSession
}

func (m *mutexSessions) Add(s *bareSession) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.m[s.ID()]; ok {
		return false
	}
	m.m[s.ID()] = s
	return true
}

func (m *mutexSessions) Get(id string) (*bareSession, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.m[id]
	return s, ok
}

func (m *mutexSessions) Remove(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.m[id]
	delete(m.m, id)
	return ok
}

// sessionStore is what both managers offer the benchmark.
type sessionStore interface {
	Add(*bareSession) bool
	Get(string) (*bareSession, bool)
	Remove(string) bool
}

// benchSessions runs a join/look-up/leave mix over 1,000 resident sessions:
// eight look-ups for every add and remove, as signaling does.
func benchSessions(b *testing.B, store sessionStore, owner *bareSessions) {
	const resident = 1000
	ids := make([]string, resident)
	for i := range ids {
		ids[i] = fmt.Sprintf("PA_%06d", i)
		store.Add(newBare(ids[i], owner))
	}
	var seq sync.Mutex
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		seq.Lock()
		w := next
		next++
		seq.Unlock()
		extra := newBare(fmt.Sprintf("worker_%d", w), owner)
		i := w * 7919
		for pb.Next() {
			i++
			switch i % 10 {
			case 0:
				store.Add(extra)
			case 1:
				store.Remove(extra.ID())
			default:
				store.Get(ids[i%resident])
			}
		}
	})
}

func BenchmarkSessions(b *testing.B) {
	b.Run("sharded", func(b *testing.B) {
		m := newBareSessions(32)
		benchSessions(b, m, m)
	})
	b.Run("single-mutex", func(b *testing.B) {
		benchSessions(b, &mutexSessions{m: make(map[string]*bareSession)}, newBareSessions(1))
	})
}
