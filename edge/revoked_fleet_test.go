package edge

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// TestRemovedStaysRemovedInFleet: a participant removed through one
// instance of a fleet (the request proxied to the room's owner) cannot
// join again with its token through the other: refused there at once
// while the room lives on the owner, and still refused once the room has
// emptied and would be placed on the other instance. A new token joins.
func TestRemovedStaysRemovedInFleet(t *testing.T) {
	store := redisStore(t)
	a := startFleetServerIn(t, store, "", "ams")
	b := startFleetServerIn(t, store, "", "fra")
	waitRegistered(t, store, 2)
	admin := adminToken(t, testKeys, roomAdmin)
	ann := a.dial(t, "r", "ann")
	bobToken := a.token(t, "r", "bob", bothGrants)
	bob := a.dialWith(t, bobToken, client.Options{})
	if ann.URL() != a.url || bob.URL() != a.url {
		t.Fatalf("ann at %s, bob at %s; want both at a", ann.URL(), bob.URL())
	}
	if got := api(t, http.MethodDelete, b.http+"/api/v1/rooms/r/participants/bob", admin, nil, nil); got != http.StatusNoContent {
		t.Fatalf("remove bob through b = %d; want 204", got)
	}
	waitEnded(t, bob, signal.ReasonRemoved)

	// The room is still at a: b refuses the token itself instead of
	// sending the join on.
	resp, err := http.Get(b.http + "/v1/rtc?access_token=" + bobToken)
	if err != nil {
		t.Fatal(err)
	}
	var body apiError
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || body.Code != signal.ReasonRemoved {
		t.Errorf("bob's token at b while the room is at a = %d %q; want 403 %q", resp.StatusCode, body.Code, signal.ReasonRemoved)
	}

	// Emptied, the room would be placed at b, where bob's token is
	// refused all the same.
	ann.Close()
	waitFor(t, 10*time.Second, "r's directory entry released", func() bool {
		_, ok, err := store.Lookup(t.Context(), "r")
		return err == nil && !ok
	})
	for name, at := range map[string]*testServer{"a": a, "b": b} {
		if de := dialRefusal(t, at, bobToken, ""); de.Status != http.StatusForbidden || de.Code != signal.ReasonRemoved {
			t.Errorf("bob's token at %s after the room emptied = %d %q; want 403 %q", name, de.Status, de.Code, signal.ReasonRemoved)
		}
	}
	if again := b.dial(t, "r", "bob"); again.URL() != b.url {
		t.Errorf("bob's new token joined at %s; want b, where the room is placed now", again.URL())
	}
}

// TestRemoveWithoutDirectory: while the directory cannot be written, a
// removal is refused with 503 and the participant stays, so a 204 always
// means every instance refuses the token.
func TestRemoveWithoutDirectory(t *testing.T) {
	store, rd := redisStoreOn(t)
	a := startFleetServerIn(t, store, "", "ams")
	waitRegistered(t, store, 1)
	admin := adminToken(t, testKeys, roomAdmin)
	bob := a.dial(t, "r", "bob")
	rd.Stop()
	if got := api(t, http.MethodDelete, a.http+"/api/v1/rooms/r/participants/bob", admin, nil, nil); got != http.StatusServiceUnavailable {
		t.Errorf("remove bob with Redis stopped = %d; want 503", got)
	}
	select {
	case <-bob.Done():
		t.Errorf("bob's connection ended (%q); want him in the room", bob.LeaveReason())
	default:
	}
	var ps struct{ Participants []apiParticipant }
	if got := api(t, http.MethodGet, a.http+"/api/v1/rooms/r/participants", admin, nil, &ps); got != http.StatusOK || len(ps.Participants) != 1 {
		t.Errorf("participants after the refused removal = %d %+v; want bob", got, ps.Participants)
	}
}
