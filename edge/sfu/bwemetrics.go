package sfu

import (
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// congestionReason is the reason (and cause) attribute of what the
// bandwidth allocation does: the only one there is so far.
var congestionReason = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "congestion")))

// estimateBuckets are the estimate histogram's bounds in bit/s: from an
// audio-only link to a fast one, about doubling.
var estimateBuckets = []float64{100e3, 200e3, 400e3, 700e3, 1e6, 1.5e6, 2.5e6, 4e6, 6e6, 10e6, 20e6}

// newCongestionMetrics creates the instruments of the subscribers'
// congestion control: media_subscriber_bandwidth_estimate_bps (a
// histogram of every subscriber connection's estimate, sampled at each
// allocation), media_subscriptions_paused (by reason),
// media_layer_downgrades_total (by reason) and media_probe_bytes_total.
func (m *metrics) newCongestionMetrics(meter metric.Meter) error {
	var err error
	if m.estimate, err = meter.Int64Histogram("media_subscriber_bandwidth_estimate_bps",
		metric.WithDescription("Send-side bandwidth estimates of subscriber connections, in bit/s, sampled at each allocation."),
		metric.WithExplicitBucketBoundaries(estimateBuckets...)); err != nil {
		return fmt.Errorf("sfu: create media_subscriber_bandwidth_estimate_bps: %w", err)
	}
	if m.pausedTracks, err = meter.Int64UpDownCounter("media_subscriptions_paused",
		metric.WithDescription("Subscriptions the server has paused now, by reason (congestion: the subscriber's downlink cannot carry their lowest layer).")); err != nil {
		return fmt.Errorf("sfu: create media_subscriptions_paused: %w", err)
	}
	if m.downgrades, err = meter.Int64Counter("media_layer_downgrades",
		metric.WithDescription("Subscriptions lowered to a smaller layer or paused by the server, by reason.")); err != nil {
		return fmt.Errorf("sfu: create media_layer_downgrades: %w", err)
	}
	if m.probeBytes, err = meter.Int64Counter("media_probe_bytes",
		metric.WithDescription("Padding bytes sent to subscribers to probe their downlink for more bandwidth.")); err != nil {
		return fmt.Errorf("sfu: create media_probe_bytes: %w", err)
	}
	m.pausedTracks.Add(bgCtx, 0, congestionReason)
	m.downgrades.Add(bgCtx, 0, congestionReason)
	m.probeBytes.Add(bgCtx, 0)
	return nil
}
