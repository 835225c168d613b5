package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/metric"
)

// InstanceState is what the instance gauges read. cmd fills it from the
// edge server and its configuration.
type InstanceState struct {
	// Draining reports whether the instance has begun to drain. It must be
	// safe to call from any goroutine. Required.
	Draining func() bool
	// MaxSessions is the configured session limit (MEDIA_MAX_SESSIONS).
	MaxSessions int
	// MaxConns is the configured bound on TCP connections open on PORT
	// (MEDIA_MAX_CONNS); 0 means the bound is off.
	MaxConns int
}

// RegisterInstance exports the instance's own state beside the edge's
// counts, for the alerts that need it:
//
//   - media_draining: 1 from the start of the drain until the process ends,
//     else 0. The ops port keeps serving during the drain, so a scrape sees
//     it; an instance that reports 1 long past MEDIA_DRAIN_TIMEOUT is stuck.
//   - media_sessions_limit: MEDIA_MAX_SESSIONS, so "near the limit" is a
//     ratio in PromQL rather than a number copied into the rules.
//   - media_http_conns_limit: MEDIA_MAX_CONNS, for the same ratio against
//     media_http_conns_active, so operators see the bound coming before
//     connections are reset. 0 when the bound is off; the rules skip it.
func RegisterInstance(meter metric.Meter, st InstanceState) error {
	if st.Draining == nil {
		return fmt.Errorf("telemetry: InstanceState.Draining is required")
	}
	draining, err := meter.Int64ObservableGauge("media_draining",
		metric.WithDescription("1 while the instance drains (from SIGTERM/SIGINT until exit), else 0."))
	if err != nil {
		return fmt.Errorf("telemetry: create gauge media_draining: %w", err)
	}
	limit, err := meter.Int64ObservableGauge("media_sessions_limit",
		metric.WithDescription("Sessions this instance accepts at most (MEDIA_MAX_SESSIONS)."))
	if err != nil {
		return fmt.Errorf("telemetry: create gauge media_sessions_limit: %w", err)
	}
	connLimit, err := meter.Int64ObservableGauge("media_http_conns_limit",
		metric.WithDescription("TCP connections the HTTP port holds open at most (MEDIA_MAX_CONNS); 0 when the bound is off."))
	if err != nil {
		return fmt.Errorf("telemetry: create gauge media_http_conns_limit: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(draining, int64(boolInt(st.Draining())))
		o.ObserveInt64(limit, int64(st.MaxSessions))
		o.ObserveInt64(connLimit, int64(st.MaxConns))
		return nil
	}, draining, limit, connLimit)
	if err != nil {
		return fmt.Errorf("telemetry: register instance callback: %w", err)
	}
	return nil
}
