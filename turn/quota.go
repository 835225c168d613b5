package turn

import "sync"

// Allocation refusal reasons, the reason attribute of
// media_turn_allocation_refusals.
const (
	refusedIdentityQuota = "identity_quota" // the identity holds MaxAllocationsPerIdentity
	refusedInstanceQuota = "instance_quota" // the instance holds MaxAllocations
	refusedDraining      = "draining"       // the instance is draining or closing
)

// allocKey names an allocation the way Pion does, by the client's transport
// address on one listener. Each transport has its own listener, and a
// client address is unique on a listener.
type allocKey struct {
	transport string
	client    string
}

// liveAlloc is what the ledger keeps of a live allocation.
type liveAlloc struct {
	username string
	identity string
}

// ledger counts allocations per identity and per instance, and enforces
// the quotas. Pion asks for a quota decision (reserve) before it creates
// an allocation and reports the outcome afterwards: created (confirm), or
// an error on the same client address (release). Requests of one client
// address are handled one at a time, so a reservation is settled before
// the next request of that address is read. Reservations count against the
// quotas, so concurrent clients cannot overshoot them.
type ledger struct {
	maxPerIdentity int
	max            int

	mu          sync.Mutex          // guards everything below
	pending     map[allocKey]string // reserved, not yet created: identity
	live        map[allocKey]liveAlloc
	perIdentity map[string]int // pending and live
	perTrans    map[string]int // live, by transport
	total       int            // pending and live
}

func newLedger(maxPerIdentity, max int) *ledger {
	return &ledger{
		maxPerIdentity: maxPerIdentity,
		max:            max,
		pending:        map[allocKey]string{},
		live:           map[allocKey]liveAlloc{},
		perIdentity:    map[string]int{},
		perTrans:       map[string]int{},
	}
}

// reserve takes a quota slot for a new allocation of identity at k, or
// returns the refusal reason.
func (l *ledger) reserve(k allocKey, identity string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropPending(k) // a retry after a failure Pion did not report
	switch {
	case l.perIdentity[identity] >= l.maxPerIdentity:
		return refusedIdentityQuota
	case l.total >= l.max:
		return refusedInstanceQuota
	}
	l.pending[k] = identity
	l.perIdentity[identity]++
	l.total++
	return ""
}

// confirm turns the reservation at k into a live allocation.
func (l *ledger) confirm(k allocKey, username, identity string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pending[k]; ok {
		delete(l.pending, k)
	} else { // created without a reservation: count it all the same
		l.perIdentity[identity]++
		l.total++
	}
	l.live[k] = liveAlloc{username: username, identity: identity}
	l.perTrans[k.transport]++
}

// release gives back the reservation at k, if any: the allocation failed.
func (l *ledger) release(k allocKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropPending(k)
}

func (l *ledger) dropPending(k allocKey) {
	identity, ok := l.pending[k]
	if !ok {
		return
	}
	delete(l.pending, k)
	l.decrement(identity)
}

func (l *ledger) decrement(identity string) {
	l.total--
	if l.perIdentity[identity]--; l.perIdentity[identity] <= 0 {
		delete(l.perIdentity, identity)
	}
}

// remove forgets the live allocation at k and reports whether there was one.
func (l *ledger) remove(k allocKey) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.live[k]
	if !ok {
		return false
	}
	delete(l.live, k)
	l.perTrans[k.transport]--
	l.decrement(a.identity)
	return true
}

// username returns the username of the live allocation at k, or "".
func (l *ledger) username(k allocKey) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live[k].username
}

// has reports whether a live allocation exists at k.
func (l *ledger) has(k allocKey) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.live[k]
	return ok
}

// active returns the live allocations on transport.
func (l *ledger) active(transport string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perTrans[transport]
}

// count returns every live and reserved allocation.
func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}
