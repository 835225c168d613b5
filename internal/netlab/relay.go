package netlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Relay bounds.
const (
	// relayPacket is the largest datagram a Relay forwards whole: WebRTC
	// keeps its packets under the 1500-byte Ethernet MTU.
	relayPacket = 2048
	// relayQueue is how many packets one direction holds in its delay
	// line: 2 s of a 1000 packets/s stream.
	relayQueue = 2048
	// maxFlows bounds the client addresses one Relay serves: a WebRTC
	// client has two (its publisher and subscriber connections); a test
	// has a few clients.
	maxFlows = 64
	// defaultQueueBytes is Impairment.QueueBytes when 0: 64 KiB, about
	// 200 ms at 2.5 Mbit/s, a home router's buffer.
	defaultQueueBytes = 64 << 10
)

// Impairment is what a Relay does to one direction of traffic. The zero
// value forwards everything at once.
type Impairment struct {
	// Delay is added to every packet.
	Delay time.Duration
	// Loss is the probability (0 to 1) that a packet is dropped, drawn
	// from the Relay's seeded generator.
	Loss float64
	// RateKbit, when positive, limits the direction to that many kbit/s:
	// packets wait their turn, and one that would wait behind more than
	// QueueBytes is dropped (a tail-drop router queue).
	RateKbit int
	// QueueBytes bounds the rate limiter's queue (default 64 KiB).
	QueueBytes int
}

func (im Impairment) validate() error {
	switch {
	case im.Delay < 0 || im.Delay > 10*time.Second:
		return fmt.Errorf("netlab: impairment: delay %s: want 0 to 10s", im.Delay)
	case im.Loss < 0 || im.Loss > 1:
		return fmt.Errorf("netlab: impairment: loss %v: want 0 to 1", im.Loss)
	case im.RateKbit < 0 || im.QueueBytes < 0:
		return fmt.Errorf("netlab: impairment: rate %d kbit/s, queue %d bytes: want 0 or more", im.RateKbit, im.QueueBytes)
	}
	return nil
}

// RelayStats counts packets by fate, per direction (Up: client to target).
type RelayStats struct {
	UpForwarded, UpLost, UpOverflow, UpBlackholed         int64
	DownForwarded, DownLost, DownOverflow, DownBlackholed int64
}

// Relay is a UDP forwarder between clients and one target that impairs
// what it forwards where tbf cannot: fixed delay, seeded random loss, a
// rate limit with a bounded queue, a blackhole, and a change of the source
// ports the target sees (a phone moving from Wi-Fi to mobile data).
//
// Clients send to Addr. Like a NAT, the Relay gives each client address a
// socket of its own toward the target (a flow), and returns what the
// target sends to that socket to that client. To put WebRTC clients behind
// it without touching them, have the server advertise the Relay's
// address: start it with MEDIA_ICE_BIND_ADDR=127.0.0.1 and
// MEDIA_PUBLIC_IP=127.0.0.2, and listen the Relay on 127.0.0.2 at the
// server's ICE port. Impairments apply to all flows together, as on one
// access link.
//
// Each direction has a writer goroutine that sends each packet at its
// departure time; the client socket and each flow's socket have a reader
// goroutine that decides a packet's fate and queues it. Buffers come from
// a pool. Close stops all of them.
type Relay struct {
	listen   *net.UDPConn
	target   netip.AddrPort
	up, down direction

	blackhole atomic.Bool
	pool      sync.Pool // *[relayPacket]byte

	mu     sync.Mutex // guards flows and closed's closing against new readers
	flows  map[netip.AddrPort]*flow
	closed chan struct{}
	wg     sync.WaitGroup
}

// flow is one client address and the Relay's socket toward the target
// for it, which Rebind replaces.
type flow struct {
	client   netip.AddrPort
	upstream atomic.Pointer[net.UDPConn]
}

// direction is one way through the Relay. Its readers (the down
// direction has one per flow) hold mu to use rng and next and to add to
// queued; the writer only subtracts from queued.
type direction struct {
	mu      sync.Mutex
	im      atomic.Pointer[Impairment]
	queue   chan packet
	rng     *rand.Rand
	next    time.Time    // when the rate limiter frees up
	queued  atomic.Int64 // bytes waiting for the rate limiter
	fwd     atomic.Int64
	lost    atomic.Int64
	overflw atomic.Int64
	holed   atomic.Int64
}

type packet struct {
	f   *flow
	buf *[relayPacket]byte
	n   int
	due time.Time
	// rated is the size counted in queued, released when sent.
	rated int
}

// NewRelay listens on listen (host:port, port 0 for any) and forwards to
// target; seed makes the random loss repeatable.
func NewRelay(listen, target string, seed uint64) (*Relay, error) {
	dst, err := netip.ParseAddrPort(target)
	if err != nil {
		return nil, fmt.Errorf("netlab: relay target %q: %w", target, err)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	laddr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("netlab: relay listen %q: %w", listen, err)
	}
	lc, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("netlab: relay listen %s: %w", listen, err)
	}
	r := &Relay{listen: lc, target: dst, flows: make(map[netip.AddrPort]*flow), closed: make(chan struct{})}
	r.pool.New = func() any { return new([relayPacket]byte) }
	for i, d := range []*direction{&r.up, &r.down} {
		d.im.Store(&Impairment{})
		d.queue = make(chan packet, relayQueue)
		d.rng = rand.New(rand.NewPCG(seed, uint64(i)))
	}
	r.wg.Add(3)
	go r.readClients()
	go r.write(&r.up, r.sendUp)
	go r.write(&r.down, r.sendDown)
	return r, nil
}

// Addr is where the client sends.
func (r *Relay) Addr() netip.AddrPort { return addrPort(r.listen.LocalAddr().(*net.UDPAddr)) }

// Impair sets what happens to each direction from now on: up is client to
// target, down target to client. Packets already queued keep their time.
func (r *Relay) Impair(up, down Impairment) error {
	if err := errors.Join(up.validate(), down.validate()); err != nil {
		return err
	}
	r.up.im.Store(&up)
	r.down.im.Store(&down)
	return nil
}

// Blackhole drops every packet both ways while on, as a dead path does.
func (r *Relay) Blackhole(on bool) { r.blackhole.Store(on) }

// Rebind moves every flow to a new socket toward the target, so the
// target sees each client's packets come from a new port; its replies to
// the old ports go nowhere.
func (r *Relay) Rebind() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.flows {
		if err := r.bind(f); err != nil {
			return err
		}
	}
	return nil
}

// bind gives f a new socket toward the target and a reader for it, and
// closes the old one, whose reader ends on the error. r.mu is held.
func (r *Relay) bind(f *flow) error {
	select {
	case <-r.closed:
		return net.ErrClosed
	default:
	}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: r.listen.LocalAddr().(*net.UDPAddr).IP})
	if err != nil {
		return fmt.Errorf("netlab: relay bind for %s: %w", f.client, err)
	}
	if old := f.upstream.Swap(uc); old != nil {
		old.Close()
	}
	r.wg.Add(1)
	go r.readTarget(f, uc)
	return nil
}

// flowFor returns the flow of a client address, making it on first use;
// nil when the Relay has maxFlows already or is closed.
func (r *Relay) flowFor(client netip.AddrPort) *flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.flows[client]; ok {
		return f
	}
	if len(r.flows) >= maxFlows {
		return nil
	}
	f := &flow{client: client}
	if r.bind(f) != nil {
		return nil
	}
	r.flows[client] = f
	return f
}

// Stats returns the counts so far.
func (r *Relay) Stats() RelayStats {
	return RelayStats{
		UpForwarded: r.up.fwd.Load(), UpLost: r.up.lost.Load(), UpOverflow: r.up.overflw.Load(), UpBlackholed: r.up.holed.Load(),
		DownForwarded: r.down.fwd.Load(), DownLost: r.down.lost.Load(), DownOverflow: r.down.overflw.Load(), DownBlackholed: r.down.holed.Load(),
	}
}

// Close stops the Relay and waits for its goroutines. It is idempotent.
func (r *Relay) Close() error {
	r.mu.Lock()
	select {
	case <-r.closed:
	default:
		close(r.closed)
		r.listen.Close()
		for _, f := range r.flows {
			f.upstream.Load().Close()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *Relay) readClients() {
	defer r.wg.Done()
	for {
		buf := r.pool.Get().(*[relayPacket]byte)
		n, from, err := r.listen.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			r.pool.Put(buf)
			return
		}
		f := r.flowFor(from)
		if f == nil {
			r.up.overflw.Add(1)
			r.pool.Put(buf)
			continue
		}
		r.admit(&r.up, f, buf, n)
	}
}

func (r *Relay) readTarget(f *flow, uc *net.UDPConn) {
	defer r.wg.Done()
	for {
		buf := r.pool.Get().(*[relayPacket]byte)
		n, _, err := uc.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			r.pool.Put(buf)
			return
		}
		r.admit(&r.down, f, buf, n)
	}
}

// admit decides a packet's fate and queues it with its departure time.
// It runs on a reader goroutine of the direction, under d.mu.
func (r *Relay) admit(d *direction, f *flow, buf *[relayPacket]byte, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	im := d.im.Load()
	now := time.Now()
	p := packet{f: f, buf: buf, n: n, due: now.Add(im.Delay)}
	drop := &d.lost
	switch {
	case r.blackhole.Load():
		drop = &d.holed
	case im.Loss > 0 && d.rng.Float64() < im.Loss:
	case im.RateKbit > 0 && !d.rate(im, &p, now):
		drop = &d.overflw
	default:
		drop = nil
	}
	if drop == nil {
		select {
		case d.queue <- p:
			return
		default:
			drop = &d.overflw
		}
	}
	drop.Add(1)
	d.queued.Add(-int64(p.rated))
	r.pool.Put(buf)
}

// rate gives p its turn behind the rate limiter's queue, or reports false
// when the queue is full.
func (d *direction) rate(im *Impairment, p *packet, now time.Time) bool {
	limit := im.QueueBytes
	if limit == 0 {
		limit = defaultQueueBytes
	}
	if d.queued.Load()+int64(p.n) > int64(limit) {
		return false
	}
	if d.next.Before(now) {
		d.next = now
	}
	d.next = d.next.Add(time.Duration(p.n) * 8 * time.Second / time.Duration(im.RateKbit*1000))
	if p.due.Before(d.next) {
		p.due = d.next
	}
	p.rated = p.n
	d.queued.Add(int64(p.n))
	return true
}

// write sends each queued packet of d at its departure time, in arrival
// order: after Impair shortens the delay, a packet waits behind those
// queued before it, as in a router.
func (r *Relay) write(d *direction, send func(packet)) {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var p packet
		select {
		case p = <-d.queue:
		case <-r.closed:
			return
		}
		if wait := time.Until(p.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.closed:
				r.pool.Put(p.buf)
				return
			}
		}
		if !r.blackhole.Load() {
			send(p)
			d.fwd.Add(1)
		} else {
			d.holed.Add(1)
		}
		d.queued.Add(-int64(p.rated))
		r.pool.Put(p.buf)
	}
}

func (r *Relay) sendUp(p packet) { p.f.upstream.Load().WriteToUDPAddrPort(p.buf[:p.n], r.target) }

func (r *Relay) sendDown(p packet) { r.listen.WriteToUDPAddrPort(p.buf[:p.n], p.f.client) }
