package fleet

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Store operations, the values of the op attribute.
const (
	opRegister   = "register"
	opDeregister = "deregister"
	opInstance   = "instance"
	opInstances  = "instances"
	opLookup     = "lookup"
	opClaim      = "claim"
	opRenew      = "renew"
	opRelease    = "release"
	opRooms      = "rooms"
	opRevoke     = "revoke"
	opRevoked    = "revoked"
)

// storeOps are every op value, so each series exists from the start.
var storeOps = []string{opRegister, opDeregister, opInstance, opInstances, opLookup, opClaim, opRenew, opRelease, opRooms, opRevoke, opRevoked}

// storeBuckets cover a round trip on one host (well under a millisecond)
// to one that hit the client's timeouts.
var storeBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// bg is the context of measurements: they are never cancelled.
var bg = context.Background()

// metrics are the fleet's instruments; the package doc lists them. The op
// and where attributes come from fixed sets.
type metrics struct {
	owned         metric.Int64UpDownCounter // media_fleet_rooms_owned
	placed        metric.Int64Counter       // media_fleet_joins_placed_total{where}
	conflicts     metric.Int64Counter       // media_fleet_claim_conflicts_total
	lost          metric.Int64Counter       // media_fleet_rooms_lost_total
	storeErrors   metric.Int64Counter       // media_fleet_store_errors_total{op}
	storeTime     metric.Float64Histogram   // media_fleet_store_duration_seconds{op}
	storeUp       metric.Int64Gauge         // media_fleet_store_up
	renewFailures metric.Int64Counter       // media_fleet_lease_renew_failures_total
	lapses        metric.Int64Counter       // media_fleet_lease_lapses_total
}

func newMetrics(m metric.Meter) (*metrics, error) {
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	x := &metrics{
		placed:        counter("media_fleet_joins_placed", "Rooms placed for a join, by where the owner is: here or elsewhere."),
		conflicts:     counter("media_fleet_claim_conflicts", "Room claims that lost to another instance's claim made at the same time."),
		lost:          counter("media_fleet_rooms_lost", "Rooms held here found claimed by another instance (after a store outage or a lapsed lease)."),
		storeErrors:   counter("media_fleet_store_errors", "Fleet store operations that failed, by operation."),
		renewFailures: counter("media_fleet_lease_renew_failures", "Renewals of this instance's lease that failed."),
		lapses:        counter("media_fleet_lease_lapses", "Renewals that found this instance's lease already expired."),
	}
	var err error
	x.owned, err = m.Int64UpDownCounter("media_fleet_rooms_owned", metric.WithDescription("Rooms this instance holds in the fleet directory now."))
	errs = append(errs, err)
	x.storeUp, err = m.Int64Gauge("media_fleet_store_up", metric.WithDescription("1 when the last lease renewal reached the fleet store, else 0."))
	errs = append(errs, err)
	x.storeTime, err = m.Float64Histogram("media_fleet_store_duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(storeBuckets...),
		metric.WithDescription("Fleet store round trips, by operation."))
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("fleet: metrics: %w", err)
		}
	}
	x.owned.Add(bg, 0)
	for _, c := range []metric.Int64Counter{x.conflicts, x.lost, x.renewFailures, x.lapses} {
		c.Add(bg, 0)
	}
	for _, w := range []string{"here", "elsewhere"} {
		x.placed.Add(bg, 0, metric.WithAttributes(attribute.String("where", w)))
	}
	for _, op := range storeOps {
		x.storeErrors.Add(bg, 0, metric.WithAttributes(attribute.String("op", op)))
	}
	return x, nil
}

// storeOp records one store round trip of op that started at start.
func (m *metrics) storeOp(op string, start time.Time, err error) {
	attrs := metric.WithAttributes(attribute.String("op", op))
	m.storeTime.Record(bg, time.Since(start).Seconds(), attrs)
	if err != nil {
		m.storeErrors.Add(bg, 1, attrs)
	}
}

func (m *metrics) joinPlaced(here bool) {
	where := "elsewhere"
	if here {
		where = "here"
	}
	m.placed.Add(bg, 1, metric.WithAttributes(attribute.String("where", where)))
}

func (m *metrics) setStoreUp(up bool) {
	v := int64(0)
	if up {
		v = 1
	}
	m.storeUp.Record(bg, v)
}
