package sfu

import (
	"encoding/binary"
	"sort"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// controller is a send-side estimator under comparison.
type controller interface {
	sent(h *rtp.Header, payload []byte) // stamps h's transport-wide sequence
	feedback(pkts []rtcp.Packet)
	estimate() float64
	close()
}

const compareExtID = 5

// ourController is our estimator behind our send history.
type ourController struct {
	t   *twccSender
	e   *estimator
	buf []packetResult
}

func (c *ourController) sent(h *rtp.Header, payload []byte) {
	var exts [1]rtp.Extension
	var seq [2]byte
	c.t.stampHeader(h, &exts, &seq, compareExtID, len(payload), false)
	_ = h.SetExtension(compareExtID, append([]byte(nil), seq[:]...))
}

func (c *ourController) feedback(pkts []rtcp.Packet) {
	for _, p := range pkts {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			c.buf = c.t.results(marshalTWCC(fb), c.buf[:0])
			c.e.update(c.t.now(), c.buf)
		}
	}
}

func (c *ourController) estimate() float64 { return c.e.estimate }
func (c *ourController) close()            {}

// pionController is pion/interceptor's GCC (delay and loss based, no
// pacer) fed through its stream writer and WriteRTCP, as its interceptor
// would.
type pionController struct {
	bwe *gcc.SendSideBWE
	w   interceptor.RTPWriter
	seq uint16
}

func newPionController(t *testing.T) *pionController {
	bwe, err := gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(1_000_000), gcc.SendSideBWEMaxBitrate(maxEstimate),
		gcc.SendSideBWEPacer(gcc.NewNoOpPacer()))
	if err != nil {
		t.Fatal(err)
	}
	info := &interceptor.StreamInfo{SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: compareExtID}}}
	w := bwe.AddStream(info, interceptor.RTPWriterFunc(func(_ *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) { return len(p), nil }))
	return &pionController{bwe: bwe, w: w}
}

func (c *pionController) sent(h *rtp.Header, payload []byte) {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], c.seq)
	c.seq++
	_ = h.SetExtension(compareExtID, b[:])
	_, _ = c.w.Write(h, payload, nil)
}

func (c *pionController) feedback(pkts []rtcp.Packet) { _ = c.bwe.WriteRTCP(pkts, nil) }
func (c *pionController) estimate() float64           { return float64(c.bwe.GetTargetBitrate()) }
func (c *pionController) close()                      { _ = c.bwe.Close() }

// runLink drives c over link l in fake time: 1200-byte packets at
// min(estimate, want), arrivals recorded by pion's TWCC recorder (what a
// Pion receiver sends) and fed back every 100 ms. capacity(t) sets the
// link's rate over time. It returns the estimate every 100 ms.
func runLink(c controller, l *link, d time.Duration, want float64, capacity func(time.Duration) float64) []float64 {
	const size = 1200
	rec := twcc.NewRecorder(2)
	type arrival struct {
		seq uint16
		at  time.Duration
	}
	var pending []arrival
	var out []float64
	start := time.Now()
	nextFeedback := 100 * time.Millisecond
	payload := make([]byte, size-20)
	for now := time.Duration(0); now < d; now = time.Since(start) {
		l.capacity = capacity(now)
		h := rtp.Header{Version: 2, SSRC: 1, PayloadType: 96}
		c.sent(&h, payload)
		seq := binary.BigEndian.Uint16(h.GetExtension(compareExtID))
		if r := l.carry(now, size); r.received {
			pending = append(pending, arrival{seq: seq, at: r.arrived})
		}
		if now >= nextFeedback {
			sort.Slice(pending, func(i, j int) bool { return pending[i].at < pending[j].at })
			k := 0
			for ; k < len(pending) && pending[k].at <= now; k++ {
				rec.Record(1, pending[k].seq, int64(pending[k].at/time.Microsecond))
			}
			pending = pending[k:]
			c.feedback(rec.BuildFeedbackPacket())
			out = append(out, c.estimate())
			nextFeedback += 100 * time.Millisecond
		}
		rate := want
		if e := c.estimate(); e > 0 {
			rate = min(rate, e)
		}
		time.Sleep(time.Duration(float64(size*8) / rate * float64(time.Second)))
	}
	return out
}

// TestCompareWithPionGCC runs ours and pion's GCC over the same link and
// receiver (pion's TWCC recorder): 4 Mbit/s for 10 s, then 500 kbit/s,
// with a sender that wants 2 Mbit/s. Both must come down to the link
// within 5 s of the step; the log shows how each did (the doc comment
// of bwe.go reports it).
func TestCompareWithPionGCC(t *testing.T) {
	step := func(at time.Duration) float64 {
		if at < 10*time.Second {
			return 4e6
		}
		return 500e3
	}
	for _, tc := range []struct {
		name string
		make func(*testing.T) controller
	}{
		{"ours", func(*testing.T) controller {
			return &ourController{t: newTWCCSender(), e: newEstimator()}
		}},
		{"pion", func(t *testing.T) controller { return newPionController(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := tc.make(t)
				defer c.close()
				got := runLink(c, newLink(4e6, 0), 20*time.Second, 2e6, step)
				before := got[95]
				var over, sum float64
				for _, e := range got[150:] { // 5 s after the step on
					over = max(over, e)
					sum += e
				}
				t.Logf("%s: %.0f bit/s before the step (wants 2 Mbit/s on 4); from 5 s after the step to 500 kbit/s: mean %.0f, max %.0f",
					tc.name, before, sum/float64(len(got)-150), over)
				if over > 1.2*500e3 {
					t.Errorf("%s: estimate %.0f bit/s 5 s after the link fell to 500 kbit/s; want at most 600 kbit/s", tc.name, over)
				}
			})
		})
	}
}
