package fleet_test

import (
	"testing"
	"time"

	"github.com/media-service/media-service/edge/fleet"
)

// A key one instance revokes is revoked for every instance until its
// time passes, and forgotten after; one whose time has passed already is
// not written.
func TestRevokeIsFleetWide(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		a := join(t, open(t), "a", "ams", fleet.Load{})
		bm := join(t, open(t), "b", "fra", fleet.Load{})
		if err := a.Revoke(t.Context(), "k1", time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("Revoke(k1) = %v", err)
		}
		if err := a.Revoke(t.Context(), "k2", time.Now().Add(1500*time.Millisecond)); err != nil {
			t.Fatalf("Revoke(k2) = %v", err)
		}
		if err := a.Revoke(t.Context(), "k3", time.Now().Add(-time.Second)); err != nil {
			t.Fatalf("Revoke(k3, past) = %v", err)
		}
		for key, want := range map[string]bool{"k1": true, "k2": true, "k3": false, "never": false, "": false} {
			if got, err := bm.Revoked(t.Context(), key); err != nil || got != want {
				t.Errorf("Revoked(%q) at b = %v, %v; want %v", key, got, err, want)
			}
		}
		eventually(t, "k2 forgotten once its time passed", func() bool {
			got, err := bm.Revoked(t.Context(), "k2")
			return err == nil && !got
		})
		if err := a.Revoke(t.Context(), "", time.Now().Add(time.Hour)); err == nil {
			t.Error(`Revoke("") = nil; want an error`)
		}
	})
}
