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

// Paths of relayed datagrams, the path attribute of media_turn_relayed_packets.
const (
	pathKernel = "kernel" // through a relayed socket
	pathMemory = "memory" // handed to or from the SFU's socket in memory (handoff.go)
)

// byteCounts are the bytes and datagrams relayed on one transport, counted
// with atomics on the packet path and read by the meter's callback.
type byteCounts struct {
	toPeer, fromPeer     atomic.Int64 // bytes
	kernelTo, kernelFrom atomic.Int64 // datagrams through relayed sockets
	handedTo, handedFrom atomic.Int64 // datagrams handed over in memory
	handoffDropped       atomic.Int64 // datagrams for the SFU its full queue refused
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

// newMetrics creates the instruments. active counts the live allocations
// of a transport; switchDrops, if not nil, the datagrams the SFU handed
// toward a relayed socket whose queue was full.
func newMetrics(m metric.Meter, active func(transport string) int, switchDrops func() int64) (*metrics, error) {
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
	packets, err := m.Int64ObservableCounter("media_turn_relayed_packets",
		metric.WithDescription("Datagrams relayed between clients and peers, by transport, direction and path (kernel, or memory: to or from this instance's SFU without a trip through the kernel)."))
	errs = append(errs, err)
	drops, err := m.Int64ObservableCounter("media_turn_handoff_drops",
		metric.WithDescription("Datagrams handed over in memory between the relay and this instance's SFU that the receiving queue, full, dropped, by direction."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("turn: create instruments: %w", err)
	}
	ms.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var dropped int64
		for _, t := range transports {
			tr, b := attribute.String("transport", t), ms.bytes[t]
			o.ObserveInt64(activeGauge, int64(active(t)), metric.WithAttributes(tr))
			o.ObserveInt64(relayed, b.toPeer.Load(), metric.WithAttributes(tr, attribute.String("direction", toPeer)))
			o.ObserveInt64(relayed, b.fromPeer.Load(), metric.WithAttributes(tr, attribute.String("direction", fromPeer)))
			observePackets(o, packets, tr, b)
			dropped += b.handoffDropped.Load()
		}
		o.ObserveInt64(drops, dropped, metric.WithAttributes(attribute.String("direction", toPeer)))
		if switchDrops != nil {
			o.ObserveInt64(drops, switchDrops(), metric.WithAttributes(attribute.String("direction", fromPeer)))
		}
		return nil
	}, activeGauge, relayed, packets, drops)
	if err != nil {
		return nil, fmt.Errorf("turn: register metric callback: %w", err)
	}
	return ms, nil
}

// observePackets reports b's datagram counts on transport tr.
func observePackets(o metric.Observer, packets metric.Int64ObservableCounter, tr attribute.KeyValue, b *byteCounts) {
	for _, p := range []struct {
		n               *atomic.Int64
		direction, path string
	}{
		{&b.kernelTo, toPeer, pathKernel}, {&b.kernelFrom, fromPeer, pathKernel},
		{&b.handedTo, toPeer, pathMemory}, {&b.handedFrom, fromPeer, pathMemory},
	} {
		o.ObserveInt64(packets, p.n.Load(), metric.WithAttributes(tr,
			attribute.String("direction", p.direction), attribute.String("path", p.path)))
	}
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
