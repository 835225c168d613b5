package edge

import (
	"testing"
	"time"

	"github.com/media-service/media-service/edge/signal"
)

// TestOfferIDs: a publisher offer's refusal echoes its offer_id, and an
// answer naming a subscriber offer other than the outstanding one (one
// answered already) is ignored rather than applied or refused: the
// message after it is the next the client hears of.
func TestOfferIDs(t *testing.T) {
	ts := startServer(t, nil)
	ann := ts.dial(t, "r", "ann")
	if err := ann.Send(&signal.Message{Type: signal.TypeOffer, Target: signal.TargetPublisher, SDP: "v=0 not an offer", OfferID: 7}); err != nil {
		t.Fatal(err)
	}
	m := waitEvent(t, ann, 5*time.Second, "the offer's refusal", isType(signal.TypeError))
	if m.Code != signal.CodeInvalidSDP || m.Target != signal.TargetPublisher || m.OfferID != 7 {
		t.Errorf("refusal = %s on %q for offer %d; want %s on publisher for offer 7", m.Code, m.Target, m.OfferID, signal.CodeInvalidSDP)
	}

	stale := &signal.Message{Type: signal.TypeAnswer, Target: signal.TargetSubscriber, SDP: "v=0 not an answer", OfferID: 999}
	if err := ann.Send(stale); err != nil {
		t.Fatal(err)
	}
	if err := ann.Send(&signal.Message{Type: signal.TypeMute, TrackID: "TR_nope", Muted: new(true)}); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent(t, ann, 5*time.Second, "the next error", isType(signal.TypeError)); m.Code != signal.CodeUnknownTrack {
		t.Errorf("after a stale answer, error %s (%s); want only the mute's %s", m.Code, m.Message, signal.CodeUnknownTrack)
	}
	stale.OfferID = 0 // not numbered: judged as before, with no offer outstanding
	if err := ann.Send(stale); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent(t, ann, 5*time.Second, "the unnumbered answer's refusal", isType(signal.TypeError)); m.Code != signal.CodeInvalidSDP {
		t.Errorf("unnumbered answer with no offer outstanding: error %s; want %s", m.Code, signal.CodeInvalidSDP)
	}
}
