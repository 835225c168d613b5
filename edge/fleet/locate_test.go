package fleet_test

import (
	"testing"
	"time"

	"github.com/media-service/media-service/edge/fleet"
)

// TestLocateNeverPlaces: Locate finds a placed room's owner from any
// instance, reports a room with no entry, or one whose entry names an
// instance that is gone or forged, as nowhere, and never claims it.
func TestLocateNeverPlaces(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		bm := join(t, open(t), "b", "ams", fleet.Load{})
		if _, ok, err := bm.Locate(t.Context(), "r"); ok || err != nil {
			t.Fatalf("Locate(r) before any join = %v, %v; want nowhere", ok, err)
		}
		if _, ok, _ := bm.store.Lookup(t.Context(), "r"); ok {
			t.Fatal("Locate(r) claimed the room")
		}
		owner, err := a.Place(t.Context(), "r", "ams")
		if err != nil {
			t.Fatal(err)
		}
		if got, ok, err := bm.Locate(t.Context(), "r"); !ok || err != nil || got.ID != owner.ID || got.URL != owner.URL {
			t.Errorf("Locate(r) on b = %+v, %v, %v; want the owner %+v", got, ok, err, owner)
		}
		forged := fleet.Claim{Owner: "a", URL: "http://evil.test", Token: "t"}
		if _, err := a.store.Claim(t.Context(), "f", fleet.Claim{}, forged, time.Minute); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := bm.Locate(t.Context(), "f"); ok || err != nil {
			t.Errorf("Locate(f) over a forged entry = %+v, %v, %v; want nowhere", got, ok, err)
		}
	})
}
