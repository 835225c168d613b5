package sfu

import (
	"context"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// bgCtx is the context for synchronous metric updates, which do not use
// one.
var bgCtx = context.Background()

// readRTCP reads the subscriber's RTCP for this track until the sender
// stops. Pion's interceptors see every packet first (receiver reports);
// we act on keyframe requests and NACKs. A sender stops on Close or when
// the subscriber's PeerConnection closes; either way the subscription then
// leaves the fan-out, so a dead subscriber costs no more writes even
// before its owner calls Close.
func (s *Subscription) readRTCP() {
	defer s.wg.Done()
	defer s.bound.Store(nil)
	defer s.pub.remove(s)
	buf := make([]byte, readBufSize)
	rtx := &retransmitter{sub: s, buf: make([]byte, readBufSize)}
	for errs := 0; errs < maxReadErrors; {
		n, _, err := s.sender.Read(buf)
		if err != nil {
			if isEnd(err) {
				return
			}
			errs++
			continue
		}
		errs = 0
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		s.handleRTCP(pkts, rtx)
	}
}

// handleRTCP dispatches one compound RTCP packet from the subscriber.
func (s *Subscription) handleRTCP(pkts []rtcp.Packet, rtx *retransmitter) {
	for _, pkt := range pkts {
		switch pkt := pkt.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			s.pub.requestKeyframe()
		case *rtcp.TransportLayerNack:
			rtx.handle(pkt)
		}
	}
}

// retransmitter answers one subscriber's NACKs from its publication's
// packet buffer. It is owned by the subscription's RTCP goroutine, which
// reuses its buffer and header.
type retransmitter struct {
	sub *Subscription
	buf []byte
	hdr rtp.Header
}

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
	var asked, sent int64
	for i := range nack.Nacks {
		nack.Nacks[i].Range(func(seq uint16) bool {
			asked++
			if r.resend(seq) {
				sent++
			}
			return true
		})
	}
	m.nackedPackets.Add(bgCtx, asked, opt)
	m.retransmits.Add(bgCtx, sent, opt)
	if asked > sent {
		m.nackMisses.Add(bgCtx, asked-sent, opt)
	}
}

// resend writes the buffered packet seq to the subscriber again, with the
// subscriber's SSRC and payload type, and reports whether it could.
func (r *retransmitter) resend(seq uint16) bool {
	s := r.sub
	if s.pub.ring == nil {
		return false
	}
	n := s.pub.ring.get(seq, r.buf)
	if n == 0 {
		return false
	}
	payload, ok := parseRTP(r.buf[:n], &r.hdr)
	b := s.bound.Load()
	if !ok || b == nil {
		return false
	}
	r.hdr.SSRC = b.ssrc
	r.hdr.PayloadType = b.pt
	_, err := b.w.WriteRTP(&r.hdr, payload)
	return err == nil
}
