package sfu

import "github.com/pion/rtcp"

// onRTCP handles RTCP the subscriber sent about this track, delivered by
// the connection's rtcpRouter.
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
			s.requestKeyframe()
		case *rtcp.TransportLayerNack:
			rtx.handle(pkt)
		}
	}
}
