package sfu

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// capRelay stands between one client and the engine on 127.0.0.1 and
// caps the downlink, as a bottleneck does: what the engine sends the
// client waits in a FIFO drained at rate bit/s, and what would wait
// longer than maxQueue is dropped (a tail-drop queue, like tc tbf's
// latency bound). The uplink passes unchanged. The client is given the
// relay's address in place of the engine's (the offer's candidate is
// rewritten); the engine sees the relay's other socket as a
// peer-reflexive candidate.
type capRelay struct {
	front *net.UDPConn // the client talks to this
	back  *net.UDPConn // and this talks to the engine
	to    *net.UDPAddr // the engine

	rate     atomic.Int64 // bit/s; 0 uncapped
	maxQueue time.Duration
	cut      atomic.Bool // drop everything both ways: the client's network is gone

	mu     sync.Mutex
	client *net.UDPAddr // the client's address, from its first datagram
	free   time.Time    // when the bottleneck is next idle
	in     int64        // bytes the engine sent (what reaches the bottleneck)
	inPkts int64
	drops  int64 // packets dropped at the bottleneck
	// The same for probe padding, told apart by its size on the wire
	// (probeWireSize): the media's loss is what a user sees.
	padPkts, padDrops int64

	out  chan timed
	done chan struct{}
	wg   sync.WaitGroup
}

type timed struct {
	at time.Time
	b  []byte
}

// relayListen is a UDP socket on 127.0.0.1 for a test relay, which
// closes it.
func relayListen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("relay listen: %v", err)
	}
	return c
}

func newCapRelay(t *testing.T, engine *net.UDPAddr) *capRelay {
	t.Helper()
	r := &capRelay{front: relayListen(t), back: relayListen(t), to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: engine.Port},
		maxQueue: 250 * time.Millisecond, out: make(chan timed, 8192), done: make(chan struct{})}
	r.wg.Add(3)
	go r.up()
	go r.down()
	go r.deliver()
	t.Cleanup(r.close)
	return r
}

func (r *capRelay) close() {
	close(r.done)
	_ = r.front.Close()
	_ = r.back.Close()
	r.wg.Wait()
}

// port is the port the client must send to.
func (r *capRelay) port() int { return r.front.LocalAddr().(*net.UDPAddr).Port }

// up forwards the client's datagrams to the engine.
func (r *capRelay) up() {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := r.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.client = from
		r.mu.Unlock()
		if !r.cut.Load() {
			_, _ = r.back.WriteToUDP(buf[:n], r.to)
		}
	}
}

// down queues the engine's datagrams at the bottleneck.
func (r *capRelay) down() {
	defer r.wg.Done()
	for {
		buf := make([]byte, 1500)
		n, _, err := r.back.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if r.cut.Load() {
			continue
		}
		now := time.Now()
		r.mu.Lock()
		r.in += int64(n)
		r.inPkts++
		padding := n == probeWireSize+srtpTagSHA1 || n == probeWireSize+srtpTagGCM
		if padding {
			r.padPkts++
		}
		at := now
		if rate := r.rate.Load(); rate > 0 {
			start := now
			if r.free.After(now) {
				start = r.free
			}
			if start.Sub(now) > r.maxQueue {
				r.drops++
				if padding {
					r.padDrops++
				}
				r.mu.Unlock()
				continue
			}
			r.free = start.Add(time.Duration(float64(n*8) / float64(rate) * float64(time.Second)))
			at = r.free
		}
		r.mu.Unlock()
		select {
		case r.out <- timed{at: at, b: buf[:n]}:
		case <-r.done:
			return
		}
	}
}

// deliver sends each queued datagram to the client at its time.
func (r *capRelay) deliver() {
	defer r.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var d timed
		select {
		case d = <-r.out:
		case <-r.done:
			return
		}
		if wait := time.Until(d.at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.done:
				return
			}
		}
		r.mu.Lock()
		client := r.client
		r.mu.Unlock()
		if client != nil {
			_, _ = r.front.WriteToUDP(d.b, client)
		}
	}
}

// probeWireSize is a probe padding packet's size in UDP before SRTP's
// tag: RTP header, the transport-wide sequence extension and the
// padding. The tag is 10 bytes (AES-CM with HMAC-SHA1-80) or 16 (AES-GCM),
// by what DTLS negotiated; the test's media packets are never that size.
const (
	probeWireSize = 12 + 8 + paddingSize
	srtpTagSHA1   = 10
	srtpTagGCM    = 16
)

// counts returns the bytes the engine has sent through the relay so
// far, and the media packets (probe padding left out) it sent and the
// bottleneck dropped.
func (r *capRelay) counts() (bytes, pkts, drops int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.in, r.inPkts - r.padPkts, r.drops - r.padDrops
}

// padding returns the probe padding packets the engine sent through the
// relay and those the bottleneck dropped.
func (r *capRelay) padding() (pkts, drops int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.padPkts, r.padDrops
}
