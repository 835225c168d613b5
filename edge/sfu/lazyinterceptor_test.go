package sfu

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// receivingLoops are the functions of the goroutines Pion's receiving
// interceptors start, one each per connection they are bound to.
var receivingLoops = []string{
	"interceptor/pkg/nack.(*GeneratorInterceptor).loop",
	"interceptor/pkg/report.(*ReceiverInterceptor).loop",
	"interceptor/pkg/twcc.(*SenderInterceptor).loop",
}

// goroutinesIn counts the goroutines whose stack has fn in it.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// loops counts the goroutines of each receiving interceptor.
func loops() []int {
	n := make([]int, len(receivingLoops))
	for i, fn := range receivingLoops {
		n[i] = goroutinesIn(fn)
	}
	return n
}

// awaitLoops waits until each receiving interceptor runs base[i]+more
// goroutines.
func awaitLoops(t *testing.T, base []int, more int, when string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := loops()
		ok := true
		for i := range got {
			ok = ok && got[i] == base[i]+more
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for i, fn := range receivingLoops {
				t.Errorf("%s: %d goroutines in %s; want %d", when, got[i], fn, base[i]+more)
			}
			t.FailNow()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReceivingInterceptorsWaitForAStream: a publisher connection that
// receives no stream (a viewer's) runs none of Pion's receiving
// interceptors' ticking goroutines (Pion starts them as the connection
// is made); one that receives a stream runs them, and they work: the
// publisher gets receiver reports about its video that echo its own
// sender reports, so the chain reads the stream's RTCP too.
func TestReceivingInterceptorsWaitForAStream(t *testing.T) {
	h := newHarness(t, Config{})
	base := loops()
	newServerPC(t, h.engine.NewPublisherPeerConnection) // a viewer's; Pion's go statements run as it is made
	awaitLoops(t, base, 0, "a publisher connection with no stream")

	pub := h.newPublisher(t)
	pub.publications(t)
	// The publisher's client connection runs Pion's default set too.
	awaitLoops(t, base, 2, "a publisher connection receiving")
	reports := pub.readReceiverReports(t)
	pub.feed(t, 5*time.Millisecond, false)
	select {
	case <-reports:
	case <-time.After(waitFor):
		t.Fatalf("the publisher got no receiver report on its video echoing a sender report within %s", waitFor)
	}
}

// readReceiverReports signals each receiver report the publisher gets
// about its video that echoes one of its sender reports (its last
// sender report field set: the server read the sender report).
func (p *publisher) readReceiverReports(t testing.TB) <-chan struct{} {
	t.Helper()
	out := make(chan struct{}, 1)
	ssrc := uint32(p.video.sender.GetParameters().Encodings[0].SSRC)
	go func() {
		for {
			pkts, _, err := p.video.sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				rr, ok := pkt.(*rtcp.ReceiverReport)
				if !ok {
					continue
				}
				for _, r := range rr.Reports {
					if r.SSRC == ssrc && r.LastSenderReport != 0 {
						select {
						case out <- struct{}{}:
						default:
						}
					}
				}
			}
		}
	}()
	return out
}
