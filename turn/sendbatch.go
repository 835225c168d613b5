package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"

	"github.com/media-service/media-service/internal/mmsg"
)

// sendBatch is how many datagrams one sendmmsg carries at most.
const sendBatch = mmsg.MaxBatch

// sendSlot holds one queued datagram: a ChannelData or Data indication
// of Pion's largest relayed datagram fits.
const sendSlot = 2048

// errTooLarge is a datagram beyond what the listener sends.
var errTooLarge = errors.New("turn: datagram too large")

// batchWriter writes the TURN/UDP listener's datagrams for every
// allocation's goroutine, combining the writes that arrive together into
// one sendmmsg. A writer that finds no write under way sends its own
// datagram at once and then sends, in batches, whatever the others queued
// meanwhile; a writer that finds one under way queues a copy and returns.
// So a lone datagram leaves as soon as it would with sendto, and a burst
// (all allocation goroutines waking at once) leaves in a few system
// calls, with no goroutine of its own and no allocation.
//
// It is also the SFU's batch (handoff.Batch): between Hold and Release,
// while the SFU fans a packet out, writes queue, and they leave together
// at the Release (or as soon as a batch is full), as the SFU's copies to
// direct subscribers do on its own socket.
//
// A queued datagram's send error is not reported to its writer, as a
// datagram the kernel drops after sendto is not: TURN over UDP is best
// effort, and Pion only logs them.
type batchWriter struct {
	conn   *net.UDPConn
	batch  *mmsg.Writer // sendmmsg, raw where it can be (internal/mmsg)
	single *mmsg.Single // a datagram sent alone, as a raw sendto; nil: through conn (not Linux)

	mu      sync.Mutex // guards everything below
	holds   int        // fan-outs under way: writes queue until a Release
	sending bool       // a writer is sending; others queue
	queue   *sendQueue // where writers queue
	spare   *sendQueue // the one being sent, then the next queue
	// own is where the sending writer builds its own ChannelData to send
	// at once: only the writer that set sending uses it.
	own [sendSlot]byte
	// lent is the ChannelData number and destination of the queue's
	// next slot while lend has lent it; mu is held meanwhile.
	lentNumber uint16
	lentTo     netip.AddrPort
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

// rawData is the channel "number" of a datagram written as it is, not as
// ChannelData (whose numbers are 0x4000 to 0x7FFF).
const rawData = 0

func newBatchWriter(c *net.UDPConn) *batchWriter {
	return &batchWriter{conn: c, batch: mmsg.NewWriter(c), single: mmsg.NewSingle(c), queue: &sendQueue{}, spare: &sendQueue{}}
}

// WriteTo sends p to addr, or queues it behind the write under way.
func (w *batchWriter) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return w.conn.WriteTo(p, addr)
	}
	return w.write(rawData, p, ua.AddrPort())
}

// writeChannelData sends data to ap as a ChannelData message on channel
// number, or queues it, as WriteTo does with a datagram.
func (w *batchWriter) writeChannelData(number uint16, data []byte, ap netip.AddrPort) {
	_, _ = w.write(number, data, ap) // best effort, as Pion's own relaying
}

// write sends p (as ChannelData on channel number, unless rawData) to ap
// at once, or queues it behind the write or during the fan-out under way.
func (w *batchWriter) write(number uint16, p []byte, ap netip.AddrPort) (int, error) {
	w.mu.Lock()
	if w.sending || w.holds > 0 {
		queued := w.queue.add(number, p, ap)
		if w.sending || (queued && w.queue.n < sendBatch) {
			w.mu.Unlock()
			if queued {
				return len(p), nil
			}
			return w.sendUnqueued(number, p, ap, nil) // full, or too large to queue
		}
		// A fan-out filled the queue: send it now, this datagram with it.
		w.sending = true
		w.mu.Unlock()
		w.sendQueued()
		if !queued {
			return w.sendUnqueued(number, p, ap, &w.own)
		}
		return len(p), nil
	}
	w.sending = true
	w.mu.Unlock()
	n, err := w.sendUnqueued(number, p, ap, &w.own)
	w.sendQueued()
	return n, err
}

// sendUnqueued sends p to ap with one sendto, as ChannelData built in
// scratch (own, for the sending writer; a buffer of its own otherwise,
// when the queue is full behind another's send, which is rare).
func (w *batchWriter) sendUnqueued(number uint16, p []byte, ap netip.AddrPort, scratch *[sendSlot]byte) (int, error) {
	if number == rawData {
		return w.sendto(p, ap)
	}
	if channelDataLen(len(p)) > sendSlot {
		return 0, errTooLarge
	}
	if scratch == nil {
		scratch = new([sendSlot]byte)
	}
	if _, err := w.sendto(scratch[:putChannelData(scratch[:], number, p)], ap); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sendto sends p to ap now: with a raw sendto where it can, so that the
// datagrams that leave alone (the relayed subscribers' RTCP and STUN,
// most of a quiet relay's traffic) do not wake the runtime's sysmon
// thread each, as writes through net do when the process was idle
// (internal/mmsg).
func (w *batchWriter) sendto(p []byte, ap netip.AddrPort) (int, error) {
	if w.single != nil {
		if n, ok, err := w.single.WriteToAddrPort(p, ap); ok {
			return n, err
		}
	}
	return w.conn.WriteToUDPAddrPort(p, ap)
}

// Hold starts a fan-out: writes queue until its Release.
func (w *batchWriter) Hold() {
	w.mu.Lock()
	w.holds++
	w.mu.Unlock()
}

// Release ends a fan-out and sends what is queued, unless a writer
// already is.
func (w *batchWriter) Release() {
	w.mu.Lock()
	w.holds = max(w.holds-1, 0)
	if w.sending || w.queue.n == 0 {
		w.mu.Unlock()
		return
	}
	w.sending = true
	w.mu.Unlock()
	w.sendQueued()
}

// lend lends the data part of the queue's next slot for a ChannelData
// message on channel number to ap, when a fan-out holds writes (the SFU
// encrypts its copy there: no copy of it is made), or returns nil. After
// a buffer, w.mu is held until commitLent or cancelLent.
func (w *batchWriter) lend(number uint16, ap netip.AddrPort) []byte {
	w.mu.Lock()
	if w.holds == 0 || w.queue.n == sendBatch {
		w.mu.Unlock()
		return nil // the write's own path sends it, and a full queue
	}
	w.lentNumber, w.lentTo = number, ap
	return w.queue.bufs[w.queue.n][channelHeader : sendSlot-3 : sendSlot-3] // room for the padding
}

// commitLent queues the lent slot's first n data bytes as the ChannelData
// message lend was asked for.
func (w *batchWriter) commitLent(n int) {
	q := w.queue
	b := q.bufs[q.n][:]
	binary.BigEndian.PutUint16(b, w.lentNumber)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	size := channelDataLen(n)
	clear(b[channelHeader+n : size])
	q.put(size, w.lentTo)
	w.mu.Unlock()
}

// cancelLent gives the lent slot back unused.
func (w *batchWriter) cancelLent() { w.mu.Unlock() }

// sendQueued sends what was queued while this writer sent, until nothing
// is, and lets the next writer send.
func (w *batchWriter) sendQueued() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.queue.n > 0 {
		q := w.queue
		w.queue, w.spare = w.spare, q
		w.mu.Unlock()
		q.send(w)
		w.mu.Lock()
	}
	w.sending = false
}

// add copies p for ap into the queue, as ChannelData on channel number
// unless rawData, unless the queue is full or p too large.
func (q *sendQueue) add(number uint16, p []byte, ap netip.AddrPort) bool {
	size := len(p)
	if number != rawData {
		size = channelDataLen(len(p))
	}
	if q.n == sendBatch || size > sendSlot {
		return false
	}
	if number == rawData {
		size = copy(q.bufs[q.n][:], p)
	} else {
		putChannelData(q.bufs[q.n][:], number, p)
	}
	q.put(size, ap)
	return true
}

// put queues the next slot's first size bytes for ap. The queue is not
// full.
func (q *sendQueue) put(size int, ap netip.AddrPort) {
	i := q.n
	ip := ap.Addr().Unmap()
	q.ips[i] = ip.As16()
	q.addrs[i] = net.UDPAddr{IP: q.ips[i][:], Port: int(ap.Port())}
	if ip.Is4() {
		q.addrs[i].IP = q.ips[i][12:]
	}
	q.iovs[i][0] = q.bufs[i][:size]
	q.msgs[i].Buffers = q.iovs[i][:]
	q.msgs[i].Addr = &q.addrs[i]
	q.n++
}

// send writes the queue with sendmmsg and empties it. A datagram the
// kernel refuses is skipped, so that one bad destination costs only itself.
func (q *sendQueue) send(w *batchWriter) {
	w.batch.SendAll(q.msgs[:q.n])
	for i := range q.n {
		q.msgs[i].Addr = nil
	}
	q.n = 0
}
