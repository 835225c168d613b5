package turn

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Transports, the transport attribute of every TURN instrument: how the
// client reaches the relay. Relayed traffic itself is always UDP.
const (
	transportUDP = "udp"
	transportTCP = "tcp"
	transportTLS = "tls"
)

var transports = []string{transportUDP, transportTCP, transportTLS}

// Directions of relayed bytes.
const (
	toPeer   = "to_peer"   // client to peer (the SFU)
	fromPeer = "from_peer" // peer to client
)

// Stages at which the peer policy refused a peer.
const (
	stagePermission = "permission" // CreatePermission or ChannelBind
	stageWrite      = "write"      // a datagram from the client to a peer
	stageRead       = "read"       // a datagram from a peer to the client
)

// byteCounts are the bytes relayed on one transport, counted with atomics
// on the packet path and read by the meter's callback.
type byteCounts struct {
	toPeer, fromPeer atomic.Int64
}

// metrics are the relay's instruments, named media_turn_*. Attribute values
// come from the fixed sets above: transport, reason, stage, direction.
type metrics struct {
	created       metric.Int64Counter
	authFailures  metric.Int64Counter
	peerRefusals  metric.Int64Counter
	allocRefusals metric.Int64Counter
	rateLimited   metric.Int64Counter
	connRefusals  metric.Int64Counter

	bytes map[string]*byteCounts // by transport; the map is never written after newMetrics
	reg   metric.Registration
}

func newMetrics(m metric.Meter, active func(transport string) int) (*metrics, error) {
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	ms := &metrics{
		created:       counter("media_turn_allocations_created", "TURN allocations created, by transport."),
		authFailures:  counter("media_turn_auth_failures", "TURN requests refused for their credentials, by transport and reason."),
		peerRefusals:  counter("media_turn_peer_refusals", "Peers refused by the relay policy, by transport, reason (address range) and stage."),
		allocRefusals: counter("media_turn_allocation_refusals", "Allocations refused, by transport and reason (identity_quota, instance_quota, draining)."),
		rateLimited:   counter("media_turn_rate_limited", "Unauthenticated TURN/UDP requests dropped by the per-source rate limit."),
		connRefusals:  counter("media_turn_conn_refusals", "TURN TCP/TLS connections refused or closed by a bound, by transport and reason (total, per_ip, no_allocation)."),
		bytes:         map[string]*byteCounts{},
	}
	for _, t := range transports {
		ms.bytes[t] = &byteCounts{}
		// Every counter exists from the first scrape, at 0, for each
		// transport: dashboards and alerts see 0 rather than no data.
		for _, c := range []metric.Int64Counter{ms.created, ms.authFailures, ms.peerRefusals, ms.allocRefusals, ms.rateLimited, ms.connRefusals} {
			if c != nil {
				c.Add(context.Background(), 0, metric.WithAttributes(attribute.String("transport", t)))
			}
		}
	}
	activeGauge, err := m.Int64ObservableUpDownCounter("media_turn_allocations_active",
		metric.WithDescription("TURN allocations live now, by transport."))
	errs = append(errs, err)
	relayed, err := m.Int64ObservableCounter("media_turn_relayed", metric.WithUnit("By"),
		metric.WithDescription("Bytes relayed between clients and peers, by transport and direction."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("turn: create instruments: %w", err)
	}
	ms.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, t := range transports {
			tr := attribute.String("transport", t)
			o.ObserveInt64(activeGauge, int64(active(t)), metric.WithAttributes(tr))
			o.ObserveInt64(relayed, ms.bytes[t].toPeer.Load(), metric.WithAttributes(tr, attribute.String("direction", toPeer)))
			o.ObserveInt64(relayed, ms.bytes[t].fromPeer.Load(), metric.WithAttributes(tr, attribute.String("direction", fromPeer)))
		}
		return nil
	}, activeGauge, relayed)
	if err != nil {
		return nil, fmt.Errorf("turn: register metric callback: %w", err)
	}
	return ms, nil
}

func add(c metric.Int64Counter, kv ...attribute.KeyValue) {
	c.Add(context.Background(), 1, metric.WithAttributes(kv...))
}

func (m *metrics) allocationCreated(transport string) {
	add(m.created, attribute.String("transport", transport))
}

func (m *metrics) authFailure(transport, reason string) {
	add(m.authFailures, attribute.String("transport", transport), attribute.String("reason", reason))
}

func (m *metrics) peerRefused(transport, reason, stage string) {
	add(m.peerRefusals, attribute.String("transport", transport), attribute.String("reason", reason), attribute.String("stage", stage))
}

func (m *metrics) allocationRefused(transport, reason string) {
	add(m.allocRefusals, attribute.String("transport", transport), attribute.String("reason", reason))
}

func (m *metrics) rateLimit(transport string) {
	add(m.rateLimited, attribute.String("transport", transport))
}

func (m *metrics) connRefused(transport, reason string) {
	add(m.connRefusals, attribute.String("transport", transport), attribute.String("reason", reason))
}
