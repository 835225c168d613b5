package edge

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/internal/redistest"
)

// redisStore opens a fleet store on a real Redis started for the test.
func redisStore(t *testing.T) fleet.Store {
	t.Helper()
	store, _ := redisStoreOn(t)
	return store
}

// redisStoreOn is redisStore that also returns the Redis server, for a
// test that stops it.
func redisStoreOn(t *testing.T) (fleet.Store, *redistest.Server) {
	t.Helper()
	rd := redistest.Start(t)
	store, err := fleet.NewRedisStore(context.Background(), rd.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, rd
}

// selfID is ts's instance id in its fleet.
func (ts *testServer) selfID() string { return ts.srv.routing.dir.Self().ID }

// TestAPIListsTheFleet: two instances share a real Redis directory, each
// with a room; a list from either shows both rooms with their instance
// and counts. A room whose owner is registered but does not answer, and
// one whose owner is gone, are listed with an error, and the list still
// answers 200 once the gathering's timeout has passed.
func TestAPIListsTheFleet(t *testing.T) {
	store := redisStore(t)
	a := startFleetServerIn(t, store, "", "ams")
	b := startFleetServerIn(t, store, "", "fra")
	waitRegistered(t, store, 2)
	if ann := a.dial(t, "r1", "ann"); ann.URL() != a.url {
		t.Fatalf("ann joined at %s; want a", ann.URL())
	}
	a.dial(t, "r1", "amy")
	if bob := b.dial(t, "r2", "bob"); bob.URL() != b.url {
		t.Fatalf("bob joined at %s; want b", bob.URL())
	}

	// A registered owner that accepts connections and never answers.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hungURL := "http://" + hung.Addr().String()
	ctx := context.Background()
	if _, err := store.Register(ctx, fleet.Instance{ID: "hung", URL: hungURL}, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Deregister(ctx, "hung"); hung.Close() }) // before the servers drain: no room moves there
	for room, c := range map[string]fleet.Claim{
		"stuck": {Owner: "hung", URL: hungURL, Token: "t1"},
		"ghost": {Owner: "gone", URL: "http://127.0.0.1:9", Token: "t2"},
	} {
		if _, err := store.Claim(ctx, room, fleet.Claim{}, c, time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	want := []apiRoom{
		{Name: "ghost", Instance: "gone", Error: listOwnerGone},
		{Name: "r1", Participants: 2, Instance: a.selfID()},
		{Name: "r2", Participants: 1, Instance: b.selfID()},
		{Name: "stuck", Instance: "hung", Error: listOwnerUnreachable},
	}
	lister := adminToken(t, testKeys, auth.AdminGrants{RoomList: true})
	for name, at := range map[string]*testServer{"a": a, "b": b} {
		var list roomList
		start := time.Now()
		if got := api(t, http.MethodGet, at.http+"/api/v1/rooms", lister, nil, &list); got != http.StatusOK {
			t.Fatalf("list at %s = %d; want 200", name, got)
		}
		if took := time.Since(start); took > listOwnersTimeout+5*time.Second {
			t.Errorf("list at %s took %v; want the gathering bounded by %v", name, took, listOwnersTimeout)
		}
		if len(list.Rooms) != len(want) {
			t.Fatalf("list at %s = %+v; want %+v", name, list.Rooms, want)
		}
		for i := range want {
			if list.Rooms[i] != want[i] {
				t.Errorf("list at %s: room %d = %+v; want %+v", name, i, list.Rooms[i], want[i])
			}
		}
	}

	// A forwarded list is the instance's own rooms only: no second hop.
	req, _ := http.NewRequest(http.MethodGet, b.http+"/api/v1/rooms", nil)
	req.Header.Set("Authorization", "Bearer "+lister)
	req.Header.Set(forwardedHeader, "test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var own roomList
	if err := json.NewDecoder(resp.Body).Decode(&own); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("forwarded list at b = %d, %v", resp.StatusCode, err)
	}
	if len(own.Rooms) != 1 || own.Rooms[0] != want[2] {
		t.Errorf("forwarded list at b = %+v; want only %+v", own.Rooms, want[2])
	}
}
