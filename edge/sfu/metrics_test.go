package sfu

import (
	"slices"
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// TestPrometheusNames pins the names dashboards and alerts use: every
// instrument, once touched, is exported under the name the package doc
// lists.
func TestPrometheusNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { _ = mp.Shutdown(bgCtx) })
	m, err := newMetrics(mp.Meter("sfu"))
	if err != nil {
		t.Fatal(err)
	}
	opt := kindOpt(webrtc.RTPCodecTypeVideo)
	m.nacks.Add(bgCtx, 1, opt)
	m.nackedPackets.Add(bgCtx, 1, opt)
	m.retransmits.Add(bgCtx, 1, opt)
	m.nackMisses.Add(bgCtx, 1, opt)
	m.retransmitsLimited.Add(bgCtx, 1, opt)
	m.plis.Add(bgCtx, 1, opt)
	m.plisThrottled.Add(bgCtx, 1, opt)
	m.subscriptions.Add(bgCtx, 1, opt)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range families {
		got = append(got, f.GetName())
	}
	for _, want := range []string{
		"media_rtp_received_packets_total", "media_rtp_received_bytes_total",
		"media_rtp_forwarded_packets_total", "media_rtp_forwarded_bytes_total",
		"media_rtcp_nacks_received_total", "media_rtp_nacked_packets_total",
		"media_rtp_retransmitted_packets_total", "media_rtp_nack_misses_total",
		"media_rtp_retransmits_limited_total", "media_rtcp_plis_forwarded_total",
		"media_rtcp_plis_throttled_total", "media_publications_active", "media_subscriptions_active",
		"media_udp_send_errors_total", "media_nack_buffer_bytes",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("exported metric names = %v; want %s among them", got, want)
		}
	}
}
