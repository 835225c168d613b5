package sfu

import "github.com/pion/rtcp"

// onRTCP handles RTCP the subscriber sent about this track, delivered by
// the connection's rtcpRouter. Only keyframe requests and NACKs are this
// track's: they alone are parsed, so the transport-wide feedback and
// reports that share their compound packets (the connection's bandwidth
// reads the feedback) cost no parse and no allocation here.
func (s *Subscription) onRTCP(raw []byte) {
	eachRTCP(raw, func(typ rtcp.PacketType, format uint8, sub []byte) bool {
		if typ == rtcp.TypePayloadSpecificFeedback && (format == rtcp.FormatPLI || format == rtcp.FormatFIR) ||
			typ == rtcp.TypeTransportSpecificFeedback && format == rtcp.FormatTLN {
			if pkts, err := rtcp.Unmarshal(sub); err == nil {
				s.handleRTCP(pkts, s.rtx)
			}
		}
		return true
	})
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
