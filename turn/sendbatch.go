package turn

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
)

// sendBatch is how many datagrams one sendmmsg carries at most.
const sendBatch = 64

// sendSlot holds one queued datagram: a ChannelData or Data indication
// of Pion's largest relayed datagram fits.
const sendSlot = 2048

// batchWriter writes the TURN/UDP listener's datagrams for every
// allocation's goroutine, combining the writes that arrive together into
// one sendmmsg. A writer that finds no write under way sends its own
// datagram at once and then sends, in batches, whatever the others queued
// meanwhile; a writer that finds one under way queues a copy and returns.
// So a lone datagram leaves as soon as it would with sendto, and a burst
// (a fan-out's copies to relayed subscribers, all allocation goroutines
// waking at once) leaves in a few system calls, with no goroutine of its
// own and no allocation.
//
// A queued datagram's send error is not reported to its writer, as a
// datagram the kernel drops after sendto is not: TURN over UDP is best
// effort, and Pion only logs them.
type batchWriter struct {
	conn  *net.UDPConn
	batch *ipv4.PacketConn

	mu      sync.Mutex // guards everything below
	sending bool       // a writer is sending; others queue
	queue   *sendQueue // where writers queue
	spare   *sendQueue // the one being sent, then the next queue
}

// sendQueue is a batch of datagrams copied in, ready for WriteBatch.
type sendQueue struct {
	n     int
	msgs  [sendBatch]ipv4.Message
	bufs  [sendBatch][sendSlot]byte
	addrs [sendBatch]net.UDPAddr
	ips   [sendBatch][net.IPv6len]byte
	iovs  [sendBatch][1][]byte
}

func newBatchWriter(c *net.UDPConn) *batchWriter {
	return &batchWriter{conn: c, batch: ipv4.NewPacketConn(c), queue: &sendQueue{}, spare: &sendQueue{}}
}

// WriteTo sends p to addr, or queues it behind the write under way.
func (w *batchWriter) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return w.conn.WriteTo(p, addr)
	}
	ap := ua.AddrPort()
	w.mu.Lock()
	if w.sending {
		queued := w.queue.add(p, ap)
		w.mu.Unlock()
		if queued {
			return len(p), nil
		}
		return w.conn.WriteToUDPAddrPort(p, ap) // full, or too large to queue
	}
	w.sending = true
	w.mu.Unlock()
	n, err := w.conn.WriteToUDPAddrPort(p, ap)
	w.sendQueued()
	return n, err
}

// sendQueued sends what was queued while this writer sent, until nothing
// is, and lets the next writer send.
func (w *batchWriter) sendQueued() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.queue.n > 0 {
		q := w.queue
		w.queue, w.spare = w.spare, q
		w.mu.Unlock()
		q.send(w.batch)
		w.mu.Lock()
	}
	w.sending = false
}

// add copies p for addr into the queue, unless it is full or p too large.
func (q *sendQueue) add(p []byte, ap netip.AddrPort) bool {
	if q.n == sendBatch || len(p) > sendSlot {
		return false
	}
	i := q.n
	ip := ap.Addr().Unmap()
	q.ips[i] = ip.As16()
	q.addrs[i] = net.UDPAddr{IP: q.ips[i][:], Port: int(ap.Port())}
	if ip.Is4() {
		q.addrs[i].IP = q.ips[i][12:]
	}
	q.iovs[i][0] = q.bufs[i][:copy(q.bufs[i][:], p)]
	q.msgs[i].Buffers = q.iovs[i][:]
	q.msgs[i].Addr = &q.addrs[i]
	q.n++
	return true
}

// send writes the queue with sendmmsg and empties it. A datagram the
// kernel refuses is skipped, so that one bad destination costs only itself.
func (q *sendQueue) send(c *ipv4.PacketConn) {
	for sent := 0; sent < q.n; {
		k, err := c.WriteBatch(q.msgs[sent:q.n], 0)
		if err != nil || k <= 0 { // sendmmsg fails only when its first datagram does
			k = 1
		}
		sent += k
	}
	for i := range q.n {
		q.msgs[i].Addr = nil
	}
	q.n = 0
}
