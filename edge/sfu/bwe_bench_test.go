package sfu

import (
	"testing"
	"time"
)

// BenchmarkCongestionControlPerPacket is what congestion control adds to
// one forwarded packet on a subscriber connection: the transport-wide
// sequence stamped and remembered, and its share of the estimator's work
// on the feedback that reports it (one feedback per 40 packets, as at
// 400 packets a second and a feedback every 100 ms, on a link that
// carries them all 20 ms later). Parsing the feedback and the allocation
// it may trigger are not included.
func BenchmarkCongestionControlPerPacket(b *testing.B) {
	const (
		perFeedback = 40
		gap         = 2500 * time.Microsecond // 400 packets a second
	)
	fb := make([]packetResult, perFeedback)
	tw := newTWCCSender()
	e := newEstimator()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tw.stamp(1100, false)
		if i%perFeedback == perFeedback-1 {
			first := time.Duration(i-perFeedback+1) * gap
			for j := range fb {
				sent := first + time.Duration(j)*gap
				fb[j] = packetResult{sent: sent, arrived: sent + 20*time.Millisecond, size: 1100, received: true}
			}
			e.update(fb[perFeedback-1].arrived+20*time.Millisecond, fb)
		}
	}
}
