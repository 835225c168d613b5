package sfu

import (
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"
)

// retransmitter answers one subscriber's NACKs from its publication's
// packet buffer, at most Config.RetransmitRate packets a second. Its
// buffer and header are reused: it is used by one goroutine at a time
// (the connection's SRTCP reader, through its rtcpRouter).
type retransmitter struct {
	sub   *Subscription
	buf   []byte
	hdr   rtp.Header
	ext   [1]rtp.Extension // hdr's transport-wide sequence, when negotiated
	seq   [2]byte
	limit *rate.Limiter
}

// newRetransmitter makes s's retransmitter, allowed the configured rate.
func newRetransmitter(s *Subscription) *retransmitter {
	hz := s.pub.engine.cfg.RetransmitRate
	return &retransmitter{sub: s, buf: make([]byte, readBufSize), limit: rate.NewLimiter(rate.Limit(hz), hz)}
}

// resendResult is what became of one NACKed packet.
type resendResult int

const (
	resent  resendResult = iota
	missing              // no longer buffered, or never was
	limited              // over the subscriber's retransmission rate
)

// handle resends every packet nack asks for that is still buffered.
func (r *retransmitter) handle(nack *rtcp.TransportLayerNack) {
	s := r.sub
	m := s.pub.engine.metrics
	opt := kindOpt(s.pub.kind)
	m.nacks.Add(bgCtx, 1, opt)
	b := s.bound.Load()
	if b == nil || nack.MediaSSRC != b.ssrc {
		return
	}
	var counts [3]int64 // by resendResult
	for i := range nack.Nacks {
		nack.Nacks[i].Range(func(seq uint16) bool {
			counts[r.resend(seq, b)]++
			return true
		})
	}
	m.nackedPackets.Add(bgCtx, counts[resent]+counts[missing]+counts[limited], opt)
	addNonZero(m.retransmits, counts[resent], opt)
	addNonZero(m.nackMisses, counts[missing], opt)
	addNonZero(m.retransmitsLimited, counts[limited], opt)
}

func addNonZero(c metric.Int64Counter, n int64, opt metric.AddOption) {
	if n > 0 {
		c.Add(bgCtx, n, opt)
	}
}

// resend writes the packet the subscriber knows as seq again through
// binding b: it finds the layer and source sequence number seq was sent
// from, and rewrites the buffered copy as it was rewritten then.
func (r *retransmitter) resend(seq uint16, b *binding) resendResult {
	s := r.sub
	s.mu.Lock()
	sp, ok := s.m.lookup(seq)
	s.mu.Unlock()
	l := s.pub.layer(int(sp.layer))
	if !ok || l == nil || l.ring == nil {
		return missing
	}
	n := l.ring.get(seq+sp.seq, r.buf)
	if n == 0 {
		return missing
	}
	payload, ok := parseRTP(r.buf[:n], &r.hdr)
	if !ok {
		return missing
	}
	// A connection with congestion control (transport-wide feedback)
	// bounds and traces what it resends.
	size := r.hdr.MarshalSize() + len(payload)
	if !r.limit.Allow() || (b.twcc != 0 && !s.conn.bw.repair.allow(size)) {
		return limited
	}
	r.hdr.SequenceNumber = seq
	r.hdr.Timestamp -= sp.ts
	r.hdr.SSRC = b.ssrc
	r.hdr.PayloadType = b.pt
	if s.pub.vp8 {
		if d := parseVP8(payload); !d.invalid && sp.vp8Rewrite(&d) {
			sp.writeVP8(payload, &d)
		}
	}
	if b.twcc != 0 {
		s.conn.bw.twcc.stampHeader(&r.hdr, &r.ext, &r.seq, b.twcc, len(payload)+int(r.hdr.PaddingSize), false)
	}
	if _, err := b.w.WriteRTP(&r.hdr, payload); err != nil {
		return missing
	}
	if b.twcc != 0 {
		s.conn.bw.resent.Add(int64(size))
	}
	return resent
}
