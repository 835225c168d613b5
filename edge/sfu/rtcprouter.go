package sfu

import (
	"io"
	"slices"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/transport/v5/packetio"
)

// rtcpRouter delivers the RTCP a subscriber connection receives straight
// to the subscription whose SSRC it names, on the SRTCP session's own
// goroutine, so a video subscription needs no goroutine of its own to
// read its sender. Each SubscriberConn made by NewSubscriberConn has one,
// installed as its API's BufferFactory: Pion hands every decrypted RTCP
// packet to the queue of its destination SSRC, and our queue's Write is
// the delivery.
//
// mu guards routes; handlers run with it released, one at a time: Pion's
// SRTCP session has one reader goroutine per connection, and the socket's
// reader takes the rest (rtcpTaps), so deliveries hold delivering.
type rtcpRouter struct {
	// twcc is given every compound packet and reads the transport-wide
	// feedback in it, whichever SSRC it names (a subscriber names one of
	// the connection's streams, audio ones too). Set before the
	// connection exists; never changed.
	twcc func([]byte)

	mu     sync.Mutex
	routes map[uint32]func([]byte)

	delivering sync.Mutex
	// The tap's scratch (deliverCompound), used on the socket's reader.
	raw   []rtcp.RawPacket
	ssrcs []uint32
	all   []uint32
}

func newRTCPRouter() *rtcpRouter { return &rtcpRouter{routes: map[uint32]func([]byte){}} }

// route sends the RTCP for ssrc to handle, until unroute.
func (r *rtcpRouter) route(ssrc uint32, handle func([]byte)) {
	r.mu.Lock()
	r.routes[ssrc] = handle
	r.mu.Unlock()
}

func (r *rtcpRouter) unroute(ssrc uint32) {
	r.mu.Lock()
	delete(r.routes, ssrc)
	r.mu.Unlock()
}

// deliver hands one RTCP packet for ssrc to its route, or drops it (audio
// receiver reports, packets before Bind, unknown SSRCs).
func (r *rtcpRouter) deliver(ssrc uint32, pkt []byte) {
	r.delivering.Lock()
	defer r.delivering.Unlock()
	if r.twcc != nil {
		r.twcc(pkt)
	}
	r.mu.Lock()
	handle := r.routes[ssrc]
	r.mu.Unlock()
	if handle != nil {
		handle(pkt)
	}
}

// deliverCompound delivers each packet of a decrypted compound RTCP
// packet as Pion's SRTCP session does: to each SSRC it is addressed to
// (once each), or, for one addressed to none (an unknown type), to each
// SSRC the compound packet is addressed to. A compound packet that does
// not parse is dropped, as Pion drops it.
func (r *rtcpRouter) deliverCompound(b []byte) {
	var err error
	if r.raw, err = rtcp.AppendRawPackets(r.raw[:0], b); err != nil {
		return
	}
	r.all = r.all[:0]
	allParsed := false
	for _, pkt := range r.raw {
		if r.ssrcs, err = pkt.ParseDestinationSSRC(r.ssrcs[:0]); err != nil {
			continue
		}
		to := distinct(r.ssrcs)
		if len(to) == 0 {
			if !allParsed {
				for _, p := range r.raw {
					n := len(r.all)
					if r.all, err = p.ParseDestinationSSRC(r.all); err != nil {
						r.all = r.all[:n]
					}
				}
				r.all, allParsed = distinct(r.all), true
			}
			to = r.all
		}
		for _, ssrc := range to {
			r.deliver(ssrc, pkt)
		}
	}
}

// distinct sorts ssrcs and drops repeats, in place.
func distinct(ssrcs []uint32) []uint32 {
	if len(ssrcs) < 2 {
		return ssrcs
	}
	slices.Sort(ssrcs)
	return slices.Compact(ssrcs)
}

// queues is the connection's BufferFactory: RTCP goes to the router, RTP
// (a subscriber connection receives none) to a bounded queue.
func (r *rtcpRouter) queues(t packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
	if t == packetio.RTCPBufferPacket {
		return &routedQueue{router: r, ssrc: ssrc, closed: make(chan struct{})}
	}
	return subscriberQueues(t, ssrc)
}

// routedQueue is the RTCP "queue" of one SSRC: writes are delivered at
// once and nothing is kept, so a read only waits for Close.
type routedQueue struct {
	router    *rtcpRouter
	ssrc      uint32
	closeOnce sync.Once
	closed    chan struct{}
}

func (q *routedQueue) Write(p []byte) (int, error) {
	q.router.deliver(q.ssrc, p)
	return len(p), nil
}

func (q *routedQueue) Read([]byte) (int, error) {
	<-q.closed
	return 0, io.EOF
}

func (q *routedQueue) Close() error {
	q.closeOnce.Do(func() { close(q.closed) })
	return nil
}
