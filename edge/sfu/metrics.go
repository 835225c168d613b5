package sfu

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// bgCtx is the context for synchronous metric updates, which do not use
// one.
var bgCtx = context.Background()

// kindIndex maps a track kind to an index into per-kind counters: 0 audio,
// 1 video. Kind is the only attribute media metrics carry.
func kindIndex(k webrtc.RTPCodecType) int {
	if k == webrtc.RTPCodecTypeVideo {
		return 1
	}
	return 0
}

// kindAttrs are the two attribute sets, built once, indexed by kindIndex.
var kindAttrs = [2]attribute.Set{
	attribute.NewSet(attribute.String("kind", "audio")),
	attribute.NewSet(attribute.String("kind", "video")),
}

// metrics holds the engine's instruments. The per-packet counts
// (forwarded packets and bytes) are plain atomics read by an observable
// callback, so the forwarding path pays one atomic add per packet and no
// allocation; events that happen a few times a second use synchronous
// counters.
type metrics struct {
	receivedPackets  [2]atomic.Uint64 // from publishers, by kindIndex
	receivedBytes    [2]atomic.Uint64
	forwardedPackets [2]atomic.Uint64 // to subscribers
	forwardedBytes   [2]atomic.Uint64
	activePubs       [2]atomic.Int64
	activeSubs       atomic.Int64             // subscriptions now, for Engine.Tracks
	activeLayers     atomic.Int64             // publications' layers now, for Engine.Tracks
	layerPackets     [maxLayers]atomic.Uint64 // forwarded, by source layer
	layerSwitches    [maxLayers]atomic.Uint64 // subscriptions switched, by the layer switched to
	layerReceived    [maxLayers]atomic.Uint64 // video bytes received, by layer
	nackBufferBytes  atomic.Int64             // memory of the publications' NACK histories

	nacks         metric.Int64Counter // NACK feedback messages from subscribers
	nackedPackets metric.Int64Counter // packets those NACKs asked for
	retransmits   metric.Int64Counter // packets resent from the buffer
	nackMisses    metric.Int64Counter // asked-for packets no longer buffered

	retransmitsLimited metric.Int64Counter // asked-for packets over the rate bound
	plis               metric.Int64Counter // keyframe requests sent to publishers
	plisThrottled      metric.Int64Counter // requests folded into another one
	subscriptions      metric.Int64UpDownCounter
	sendErrors         metric.Int64Counter       // datagrams a batched send could not deliver
	switchKeyframes    metric.Int64Counter       // keyframe requests made to switch layer
	pausedLayers       metric.Int64UpDownCounter // simulcast layers no subscriber needs, by reason

	// Subscribers' congestion control (bwemetrics.go).
	estimate     metric.Int64Histogram
	pausedTracks metric.Int64UpDownCounter
	downgrades   metric.Int64Counter
	probeBytes   metric.Int64Counter

	reg metric.Registration // the observable callback; kept after Close for the final flush
}

// dynacastReason is the reason attribute of layers dynacast paused.
var dynacastReason = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "dynacast")))

// layerAttrs are the attribute sets of the per-layer metrics, by layer.
var layerAttrs = [maxLayers]attribute.Set{
	attribute.NewSet(attribute.String("layer", "0")),
	attribute.NewSet(attribute.String("layer", "1")),
	attribute.NewSet(attribute.String("layer", "2")),
}

// kindOpt returns the measurement option for kind k.
func kindOpt(k webrtc.RTPCodecType) metric.MeasurementOption {
	return metric.WithAttributeSet(kindAttrs[kindIndex(k)])
}

// newMetrics creates every instrument from meter. Names are the Prometheus
// names (counters gain _total in the exporter).
func newMetrics(meter metric.Meter) (*metrics, error) {
	m := &metrics{}
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = meter.Int64Counter(name, metric.WithDescription(desc))
		return c
	}
	m.nacks = counter("media_rtcp_nacks_received", "NACK feedback messages received from subscribers.")
	m.nackedPackets = counter("media_rtp_nacked_packets", "Packets subscribers asked to be resent.")
	m.retransmits = counter("media_rtp_retransmitted_packets", "Packets resent to subscribers from the NACK buffer.")
	m.nackMisses = counter("media_rtp_nack_misses", "Packets asked for that had left the NACK buffer.")
	m.retransmitsLimited = counter("media_rtp_retransmits_limited",
		"Packets asked for beyond a subscriber's retransmission rate (MEDIA_NACK_RATE), not resent.")
	m.plis = counter("media_rtcp_plis_forwarded", "Keyframe requests (PLI) sent to publishers.")
	m.plisThrottled = counter("media_rtcp_plis_throttled", "Keyframe requests folded into another within the PLI interval.")
	m.sendErrors = counter("media_udp_send_errors", "Datagrams the kernel refused in a batched send (sendmmsg) on the ICE UDP socket.")
	m.switchKeyframes = counter("media_layer_switch_keyframe_requests", "Keyframe requests made to switch a subscription to another simulcast layer.")
	if err != nil {
		return nil, fmt.Errorf("sfu: create counter: %w", err)
	}
	if m.subscriptions, err = meter.Int64UpDownCounter("media_subscriptions_active",
		metric.WithDescription("Subscriptions (forwarded tracks) now.")); err != nil {
		return nil, fmt.Errorf("sfu: create media_subscriptions_active: %w", err)
	}
	if m.pausedLayers, err = meter.Int64UpDownCounter("media_paused_layers",
		metric.WithDescription("Simulcast layers publishers are told not to send now, by reason (dynacast: no subscriber needs them).")); err != nil {
		return nil, fmt.Errorf("sfu: create media_paused_layers: %w", err)
	}
	if err := m.newCongestionMetrics(meter); err != nil {
		return nil, err
	}
	if err := m.observe(meter); err != nil {
		return nil, err
	}
	m.zero()
	return m, nil
}

// zero adds 0 to every counter, for each kind where it has one, so every
// series exists from the first scrape: dashboards and alerts see 0 rather
// than no data, and rate() sees the first event.
func (m *metrics) zero() {
	for _, c := range []metric.Int64Counter{m.nacks, m.nackedPackets, m.retransmits, m.nackMisses, m.retransmitsLimited, m.plis, m.plisThrottled} {
		for _, set := range kindAttrs {
			c.Add(bgCtx, 0, metric.WithAttributeSet(set))
		}
	}
	m.sendErrors.Add(bgCtx, 0) // per socket, not per kind
	m.switchKeyframes.Add(bgCtx, 0)
	m.pausedLayers.Add(bgCtx, 0, dynacastReason)
}

// observed is one observable instrument and the per-kind values it reports.
type observed struct {
	name, desc string
	upDown     bool
	value      func(kind int) int64
}

// observe registers the observable instruments and their callback.
func (m *metrics) observe(meter metric.Meter) error {
	load := func(a *[2]atomic.Uint64) func(int) int64 { return func(k int) int64 { return int64(a[k].Load()) } }
	list := []observed{
		{"media_rtp_received_packets", "RTP packets received from publishers.", false, load(&m.receivedPackets)},
		{"media_rtp_received_bytes", "RTP bytes (header and payload) received from publishers.", false, load(&m.receivedBytes)},
		{"media_rtp_forwarded_packets", "RTP packets forwarded to subscribers.", false, load(&m.forwardedPackets)},
		{"media_rtp_forwarded_bytes", "RTP bytes (header and payload) forwarded to subscribers.", false, load(&m.forwardedBytes)},
		{"media_publications_active", "Published tracks being forwarded now.", true, func(k int) int64 { return m.activePubs[k].Load() }},
	}
	insts := make([]metric.Int64Observable, len(list))
	for i, o := range list {
		var err error
		if o.upDown {
			insts[i], err = meter.Int64ObservableUpDownCounter(o.name, metric.WithDescription(o.desc))
		} else {
			insts[i], err = meter.Int64ObservableCounter(o.name, metric.WithDescription(o.desc))
		}
		if err != nil {
			return fmt.Errorf("sfu: create %s: %w", o.name, err)
		}
	}
	// Only video publications keep a NACK history: the gauge has no kind.
	nackBuf, err := meter.Int64ObservableUpDownCounter("media_nack_buffer_bytes",
		metric.WithDescription("Memory the video publications' NACK histories hold (outside the Go heap on Linux)."))
	if err != nil {
		return fmt.Errorf("sfu: create media_nack_buffer_bytes: %w", err)
	}
	// The per-layer counts, with the layer attribute (forwarding path
	// atomics, like the per-kind ones).
	byLayer := []struct {
		name, desc string
		value      *[maxLayers]atomic.Uint64
	}{
		{"media_rtp_forwarded_layer_packets", "Video RTP packets forwarded to subscribers, by the simulcast layer they came from (0 for a plain track).", &m.layerPackets},
		{"media_layer_switches", "Subscriptions switched to another simulcast layer, by the layer switched to.", &m.layerSwitches},
		{"media_rtp_received_layer_bytes", "Video RTP bytes received from publishers, by simulcast layer (0 for a plain track).", &m.layerReceived},
	}
	layerInsts := make([]metric.Int64Observable, len(byLayer))
	for i, o := range byLayer {
		if layerInsts[i], err = meter.Int64ObservableCounter(o.name, metric.WithDescription(o.desc)); err != nil {
			return fmt.Errorf("sfu: create %s: %w", o.name, err)
		}
	}
	obs := make([]metric.Observable, 0, len(insts)+1+len(layerInsts))
	for _, inst := range insts {
		obs = append(obs, inst)
	}
	obs = append(obs, nackBuf)
	for _, inst := range layerInsts {
		obs = append(obs, inst)
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for k, set := range kindAttrs {
			opt := metric.WithAttributeSet(set)
			for i, inst := range insts {
				o.ObserveInt64(inst, list[i].value(k), opt)
			}
		}
		o.ObserveInt64(nackBuf, m.nackBufferBytes.Load())
		for i, inst := range layerInsts {
			for l, set := range layerAttrs {
				o.ObserveInt64(inst, int64(byLayer[i].value[l].Load()), metric.WithAttributeSet(set))
			}
		}
		return nil
	}, obs...)
	if err != nil {
		return fmt.Errorf("sfu: register metrics callback: %w", err)
	}
	return nil
}
