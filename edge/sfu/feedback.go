package sfu

import "github.com/pion/rtcp"

// readRTCP reads the subscriber's RTCP for a video track on a connection
// without an rtcpRouter, until the sender stops. Pion's interceptors see
// every packet first (receiver reports); we act on keyframe requests and
// NACKs. A sender stops on Close or when
// the subscriber's PeerConnection closes; either way the subscription then
// leaves the fan-out, so a dead subscriber costs no more writes even
// before its owner calls Close.
func (s *Subscription) readRTCP() {
	defer s.wg.Done()
	defer s.bound.Store(nil)
	defer s.pub.remove(s)
	buf := make([]byte, readBufSize)
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
		s.onRTCP(buf[:n])
	}
}

// onRTCP handles RTCP the subscriber sent about this track: from
// readRTCP, or from the connection's rtcpRouter.
func (s *Subscription) onRTCP(raw []byte) {
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		return
	}
	s.handleRTCP(pkts, s.rtx)
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
