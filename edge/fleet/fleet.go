package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
)

var (
	// ErrUnavailable is Place's answer for a room this instance does not
	// hold while the store cannot be reached: serving it here could split
	// it. Edge answers the join 503 with Retry-After.
	ErrUnavailable = errors.New("fleet: directory unavailable")
	// ErrFull is Place's answer when no serving instance is below its
	// bounds to take a new room.
	ErrFull = errors.New("fleet: no instance can take a new room")
	// ErrNotOwner is Move's answer when the room's entry is not this
	// instance's claim any more: Place tells where the room is now.
	ErrNotOwner = errors.New("fleet: room not owned here")
)

// lostBuffer is how many lost rooms wait on the Lost channel for edge to
// take them; more wait in the Fleet and are offered again at each renewal.
const lostBuffer = 64

// closeTimeout bounds Close's store writes: a Redis that does not answer
// must not hold the drain; the claims then expire by their TTL.
const closeTimeout = 2 * time.Second

// Fleet is this instance's part in a fleet: its registration, the rooms it
// holds, and the directory's answers. Its methods are safe for concurrent
// use. Run's goroutine renews the lease and the held rooms' claims and
// does the releases; Place, PickSibling and Move do their store round
// trips on the caller's goroutine.
type Fleet struct {
	store Store
	log   *slog.Logger
	m     *metrics
	ttl   time.Duration // lease and claim TTL
	every time.Duration // renewal interval: a third of ttl
	kick  chan struct{} // asks Run for a renewal now (buffer 1)
	lost  chan string   // rooms claimed away from this instance

	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex // guards the fields below
	self       Instance
	up         bool             // the last lease renewal reached the store (true until one fails)
	registered bool             // a registration succeeded since New: a later renewal finding no lease is a lapse
	held       map[string]Claim // rooms Held here, with the claim renewed (zero: not known yet)
	releasing  map[string]Claim // rooms Released here whose claim Run is to delete
	seen       map[string]seen  // claims naming this instance that Place answered, for Hold to take
	lostQueue  []string         // lost rooms not yet taken from lost
	placed     []placement      // rooms this Fleet placed within a renewal interval, oldest first
}

// placement is a new room this Fleet claimed for an instance, and when.
// Until the instance's next registration shows the room in its load,
// placement counts it in, so a burst of new rooms spreads over the fleet
// instead of all going to the instance that was least loaded when it
// began.
type placement struct {
	id string
	at time.Time
}

// seen is a claim naming this instance that Place read, and when: Hold
// takes it within a TTL, or it is forgotten.
type seen struct {
	c  Claim
	at time.Time
}

// New returns this instance's Fleet on store. self is this instance's
// registry entry (Config.Instance); its load is updated with SetLoad. log
// is scoped by the caller (with the instance id, say). Nothing is written
// to the store until Run.
func New(cfg Config, self Instance, store Store, log *slog.Logger, meter metric.Meter) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if self.ID == "" {
		return nil, errors.New("fleet: instance id is empty")
	}
	if cfg.RedisURL != "" && self.URL == "" {
		return nil, errors.New("fleet: MEDIA_PUBLIC_URL is required with MEDIA_REDIS_URL")
	}
	m, err := newMetrics(meter)
	if err != nil {
		return nil, err
	}
	return &Fleet{
		store: store, log: log, m: m,
		ttl: cfg.LeaseTTL, every: cfg.LeaseTTL / 3,
		kick: make(chan struct{}, 1), lost: make(chan string, lostBuffer),
		self: self, up: true,
		held: map[string]Claim{}, releasing: map[string]Claim{}, seen: map[string]seen{},
	}, nil
}

// Self is this instance's registry entry as last set.
func (f *Fleet) Self() Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.self
}

// SetLoad sets the load this instance registers at its next renewal.
func (f *Fleet) SetLoad(l Load) {
	f.mu.Lock()
	f.self.Load = l
	f.mu.Unlock()
}

// SetDraining marks this instance draining and writes it to the registry
// at once, so no instance places a new room here from now on. A failed
// write is logged; Run writes it again at its next renewal.
func (f *Fleet) SetDraining() {
	f.mu.Lock()
	f.self.Draining = true
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	f.renewLease(ctx)
}

// Hold records that room has participants here: Run renews its claim
// until Release. Call it when a participant joins a room Place answered
// with this instance.
func (f *Fleet) Hold(room string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.held[room]; ok {
		return
	}
	c, ok := f.releasing[room]
	if ok {
		delete(f.releasing, room)
	} else {
		c = f.seen[room].c
	}
	delete(f.seen, room)
	f.held[room] = c
	f.m.owned.Add(bg, 1)
}

// Release records that room emptied here: Run deletes its claim, fenced
// (only if it is still this instance's).
func (f *Fleet) Release(room string) {
	f.mu.Lock()
	c, ok := f.held[room]
	if ok {
		delete(f.held, room)
		f.m.owned.Add(bg, -1)
		if !c.IsZero() {
			f.releasing[room] = c
		}
	}
	f.mu.Unlock()
	if ok {
		f.wake()
	}
}

// Lost delivers rooms this instance held that the directory now gives to
// another instance (claimed there while this one could not renew): edge
// moves their participants to the owner Place names. A lost room is no
// longer held.
func (f *Fleet) Lost() <-chan string { return f.lost }

// wake asks Run for a renewal pass now.
func (f *Fleet) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run registers this instance and renews its lease and the claims of the
// rooms it holds every third of the lease TTL, re-registering and
// re-claiming after a store outage. It returns nil when ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		f.renew(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-f.kick:
		}
	}
}

// Close deregisters this instance and deletes the claims of the rooms it
// holds (fenced), within closeTimeout. It is idempotent. Call it after
// Run has returned.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		f.mu.Lock()
		rooms := maps.Clone(f.releasing)
		maps.Copy(rooms, f.held)
		f.m.owned.Add(bg, -int64(len(f.held)))
		clear(f.held)
		clear(f.releasing)
		id := f.self.ID
		f.mu.Unlock()
		var errs []error
		for room, c := range rooms {
			if c.IsZero() {
				continue
			}
			if _, err := timed(f.m, opRelease, func() (bool, error) { return f.store.Release(ctx, room, c) }); err != nil {
				errs = append(errs, fmt.Errorf("release %q: %w", room, err))
			}
		}
		if _, err := timed(f.m, opDeregister, func() (struct{}, error) { return struct{}{}, f.store.Deregister(ctx, id) }); err != nil {
			errs = append(errs, fmt.Errorf("deregister: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			f.closeErr = fmt.Errorf("fleet: close: %w", err)
		}
	})
	return f.closeErr
}

// timed runs one store operation and records its round trip and error.
func timed[T any](m *metrics, op string, do func() (T, error)) (T, error) {
	start := time.Now()
	v, err := do()
	m.storeOp(op, start, err)
	return v, err
}

// timedFound is timed for the operations that also report whether they
// found what they looked up.
func timedFound[T any](m *metrics, op string, do func() (T, bool, error)) (T, bool, error) {
	start := time.Now()
	v, ok, err := do()
	m.storeOp(op, start, err)
	return v, ok, err
}
