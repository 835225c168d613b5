package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"sync"

	"go.opentelemetry.io/otel/metric"

	"github.com/media-service/media-service/edge"
	"github.com/media-service/media-service/edge/fleet"
)

// fleetMember is this instance's membership of a fleet: the store, the
// Fleet and the goroutine renewing its lease. Without MEDIA_REDIS_URL
// there is none (all methods work on a nil *fleetMember): the instance
// runs alone exactly as before, with no directory in its join path.
type fleetMember struct {
	log    *slog.Logger
	store  fleet.Store
	fleet  *fleet.Fleet
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openFleet opens the Redis store and joins the fleet under a fresh id
// (so a restarted process is a new instance: its old claims stay fenced
// off). It does not wait for Redis: Fleet.Run registers once it answers.
func openFleet(ctx context.Context, cfg fleet.Config, log *slog.Logger, meter metric.Meter) (*fleetMember, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	store, err := fleet.OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	id := instanceID()
	f, err := fleet.New(cfg, cfg.Instance(id), store, log.With("instance", id), meter)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	log.Info("fleet_joined", "instance", id, "region", f.Self().Region, "url", f.Self().URL, "app", f.Self().App)
	return &fleetMember{log: log, store: store, fleet: f}, nil
}

// instanceID is FLY_MACHINE_ID, else the host name, with a random suffix.
func instanceID() string {
	host := os.Getenv("FLY_MACHINE_ID")
	if host == "" {
		host, _ = os.Hostname()
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	if host == "" {
		return hex.EncodeToString(b)
	}
	return host + "-" + hex.EncodeToString(b)
}

// directory is what edge routes joins with, advertising capacity
// (edge.SessionCapacity) with every load; nil alone.
func (m *fleetMember) directory(capacity int) edge.Directory {
	if m == nil {
		return nil
	}
	return &loadedFleet{Fleet: m.fleet, capacity: capacity}
}

// run starts renewing the lease and the claims. It outlives the drain on
// purpose: a draining instance stays registered (as draining) and keeps
// its rooms' claims fenced until stop.
func (m *fleetMember) run() {
	if m == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Go(func() {
		if err := m.fleet.Run(ctx); err != nil {
			m.log.Warn("fleet_run_failed", "err", err)
		}
	})
}

// stop leaves the fleet: the renewals end, the lease and the held rooms'
// claims are released, the store is closed.
func (m *fleetMember) stop() {
	if m == nil {
		return
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if err := m.fleet.Close(); err != nil {
		m.log.Warn("fleet_close_failed", "err", err)
	}
	if err := m.store.Close(); err != nil {
		m.log.Warn("fleet_store_close_failed", "err", err)
	}
}
