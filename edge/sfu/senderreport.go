package sfu

import (
	"slices"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Sender reports (RFC 3550 6.4.1) are what a subscriber maps each
// stream's RTP timestamps to wall-clock time by, to play a participant's
// audio and video in sync, and where its statistics find how many packets
// were sent. A subscriber connection sends one per stream every
// senderReportInterval, from its directInterceptor: it sees every packet
// the connection writes (forwarded, resent, paced or padding) whichever
// path takes it, so counting there costs no interceptor of its own, and
// the clock is read once per frame (the first packet with a new
// timestamp), not once per packet.

// senderReportInterval is how often each stream's report is sent.
const senderReportInterval = time.Second

// sendStream is one stream a subscriber connection sends: the direct
// path's rollover sync and what its sender reports say. The directWriter's
// mu guards it.
type sendStream struct {
	ssrc      uint32
	clockRate uint32

	synced    uint16 // the last packet both SRTP contexts saw (directWriter)
	syncedAny bool
	roc       *rolloverCount // the SSRC's, shared with any stream bound under it before

	packets, octets uint32    // sent, payload octets only (RFC 3550)
	lastSeq         uint16    // the newest packet sent in order
	lastTS          uint32    // its RTP timestamp
	lastAt          time.Time // when the first packet with lastTS was sent
}

// sent counts a packet of the stream that left.
func (st *sendStream) sent(h *rtp.Header, payload []byte) {
	d := h.SequenceNumber - st.lastSeq
	if st.packets == 0 || d > 0 && d < 1<<15 { // a resend leaves the mapping alone
		st.lastSeq = h.SequenceNumber
		if st.packets == 0 || h.Timestamp != st.lastTS {
			st.lastTS, st.lastAt = h.Timestamp, time.Now()
		}
	}
	st.packets++
	st.octets += uint32(len(payload))
}

// report is the stream's sender report at now, nil before its first
// packet (a source that sent nothing has nothing to map).
func (st *sendStream) report(now time.Time) *rtcp.SenderReport {
	if st.packets == 0 {
		return nil
	}
	ticks := int64(now.Sub(st.lastAt).Seconds() * float64(st.clockRate))
	return &rtcp.SenderReport{
		SSRC:        st.ssrc,
		NTPTime:     ntpTime(now),
		RTPTime:     st.lastTS + uint32(ticks),
		PacketCount: st.packets,
		OctetCount:  st.octets,
	}
}

// ntpEpochOffset is the seconds from the NTP epoch (1900) to Unix's.
const ntpEpochOffset = 2208988800

// ntpTime is t as a 64-bit NTP timestamp: seconds since 1900 in the high
// half, the fraction of a second in the low one.
func ntpTime(t time.Time) uint64 {
	ns := t.UnixNano()
	sec := uint64(ns/1e9) + ntpEpochOffset
	frac := uint64(ns%1e9) << 32 / 1e9
	return sec<<32 | frac
}

// bind adds a stream the connection starts sending, and starts the
// reports with the first.
func (w *directWriter) bind(info *interceptor.StreamInfo) *sendStream {
	st := &sendStream{ssrc: info.SSRC, clockRate: info.ClockRate}
	w.mu.Lock()
	st.roc = w.rolloverOf(info.SSRC)
	w.streams = append(w.streams, st)
	w.mu.Unlock()
	w.reports.start(w.sendReports)
	return st
}

// unbind removes a stream the connection stopped sending.
func (w *directWriter) unbind(info *interceptor.StreamInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.streams = slices.DeleteFunc(w.streams, func(st *sendStream) bool { return st.ssrc == info.SSRC })
	if ds := w.bySSRC[info.SSRC]; ds != nil {
		ds.bound.Store(false)
		delete(w.bySSRC, info.SSRC)
	}
}

// sendReports writes a sender report for each stream that has sent.
func (w *directWriter) sendReports(out interceptor.RTCPWriter) {
	now := time.Now()
	w.mu.Lock()
	pkts := make([]rtcp.Packet, 0, len(w.streams))
	for _, st := range w.streams {
		if r := st.report(now); r != nil {
			pkts = append(pkts, r)
		}
	}
	w.mu.Unlock()
	for _, p := range pkts {
		if _, err := out.Write([]rtcp.Packet{p}, nil); err != nil {
			w.log.Debug("sender_report_failed", "error", err) // the connection is closing or not up yet
			return
		}
	}
}

// senderReports runs a connection's reports on a timer, so a connection
// has no goroutine for them between two.
type senderReports struct {
	mu     sync.Mutex
	out    interceptor.RTCPWriter
	timer  *time.Timer
	closed bool
	active sync.WaitGroup // a round under way
}

// setWriter is where the reports go (the connection's RTCP writer).
func (r *senderReports) setWriter(out interceptor.RTCPWriter) {
	r.mu.Lock()
	r.out = out
	r.mu.Unlock()
}

// start runs send every senderReportInterval from now, until close; once.
func (r *senderReports) start(send func(interceptor.RTCPWriter)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil || r.closed {
		return
	}
	r.timer = time.AfterFunc(senderReportInterval, func() { r.round(send) })
}

func (r *senderReports) round(send func(interceptor.RTCPWriter)) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	out := r.out
	r.active.Add(1)
	r.mu.Unlock()
	defer r.active.Done()
	if out != nil {
		send(out)
	}
	r.mu.Lock()
	if !r.closed {
		r.timer.Reset(senderReportInterval)
	}
	r.mu.Unlock()
}

// close stops the reports and waits for a round under way.
func (r *senderReports) close() {
	r.mu.Lock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
	}
	r.mu.Unlock()
	r.active.Wait()
}
