package sfu

import (
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// feedbackOf has pion's recorder (what our subscribers run) record the
// arrival of seqs, 1 ms apart from at µs, and turns the feedback it
// builds into results.
func feedbackOf(t *testing.T, s *twccSender, rec *twcc.Recorder, at int64, seqs ...uint16) []packetResult {
	t.Helper()
	for i, seq := range seqs {
		rec.Record(1, seq, at+int64(i)*1000)
	}
	var out []packetResult
	for _, p := range rec.BuildFeedbackPacket() {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			out = s.results(marshalTWCC(fb), out)
		}
	}
	return out
}

// TestTWCCReorderedIsLate: packet 5 leaves after 6 and 7 and arrives
// after a feedback reported it missing. Pion's recorder reports it in
// its next feedback with 6 and 7 again: the results tell 5 as late and
// hold 6 and 7 once.
func TestTWCCReorderedIsLate(t *testing.T) {
	s := newTWCCSender()
	for range 10 {
		s.stamp(100, false)
	}
	rec := twcc.NewRecorder(2)
	first := feedbackOf(t, s, rec, 1_000_000, 0, 1, 2, 3, 4, 6, 7)
	if len(first) != 8 || first[5].received {
		t.Fatalf("first feedback = %+v; want 8 results, the 6th (seq 5) missing", first)
	}
	second := feedbackOf(t, s, rec, 1_100_000, 5, 8, 9)
	var late, received int
	for _, r := range second {
		if r.late {
			late++
		}
		if r.received {
			received++
		}
	}
	if len(second) != 3 || late != 1 || received != 3 {
		t.Errorf("second feedback: %d results, %d late, %d received; want 3, 1, 3 (seq 5 late, 8, 9)", len(second), late, received)
	}
}
