package fleet_test

import (
	"errors"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/fleet"
	"github.com/redis/go-redis/v9"
)

// Redis stopped mid-run: the rooms an instance holds are still answered
// here and new rooms get ErrUnavailable; Redis back (empty, as a restart
// without persistence leaves it): the instance registers again and claims
// its rooms again without a restart, and a room another instance took in
// between is reported lost.
func TestRedisOutage(t *testing.T) {
	open, srv := redisBackend(t).start(t)
	a := join(t, open(t), "a", "ams", fleet.Load{})
	for _, room := range []string{"kept", "taken"} {
		if owner, err := a.Place(t.Context(), room, "ams"); err != nil || owner.ID != "a" {
			t.Fatalf("Place(%s) on a = %s, %v; want a", room, owner.ID, err)
		}
		a.Hold(room)
	}

	srv.Stop()
	eventually(t, "media_fleet_store_up = 0 on a", func() bool {
		v, ok := a.metric(t, "media_fleet_store_up")
		return ok && v == 0
	})
	if owner, err := a.Place(t.Context(), "kept", "ams"); err != nil || owner.ID != "a" {
		t.Errorf("Place(kept) during the outage = %s, %v; want a, which holds it", owner.ID, err)
	}
	if owner, err := a.Place(t.Context(), "new", "ams"); !errors.Is(err, fleet.ErrUnavailable) {
		t.Errorf("Place(new) during the outage = %s, %v; want ErrUnavailable", owner.ID, err)
	}
	if n, _ := a.metric(t, "media_fleet_store_errors", "op", "lookup"); n < 2 {
		t.Errorf("media_fleet_store_errors{op=lookup} = %v; want at least 2", n)
	}
	if n, _ := a.metric(t, "media_fleet_lease_renew_failures"); n < 1 {
		t.Errorf("media_fleet_lease_renew_failures = %v; want at least 1", n)
	}

	srv.Restart()
	// Another instance claims "taken" before or after a claims it again.
	other := open(t)
	theirs := fleet.Claim{Owner: "b", URL: "http://b.test", Token: "theirs"}
	eventually(t, "b's claim of taken written", func() bool {
		cur, _, err := other.Lookup(t.Context(), "taken")
		if err != nil {
			return false
		}
		got, err := other.Claim(t.Context(), "taken", cur, theirs, time.Minute)
		return err == nil && got == theirs
	})
	eventually(t, "a registered again", func() bool {
		_, ok, err := other.Instance(t.Context(), "a")
		return err == nil && ok
	})
	eventually(t, "a claimed kept again", func() bool {
		cur, _, err := other.Lookup(t.Context(), "kept")
		return err == nil && cur.Owner == "a"
	})
	a.waitLost(t, "taken")
	if owner, err := a.Place(t.Context(), "new", "ams"); err != nil || owner.ID != "a" {
		t.Errorf("Place(new) after the outage = %s, %v; want a", owner.ID, err)
	}
	if v, _ := a.metric(t, "media_fleet_store_up"); v != 1 {
		t.Errorf("media_fleet_store_up after the outage = %v; want 1", v)
	}
	if n, _ := a.metric(t, "media_fleet_lease_lapses"); n != 1 {
		t.Errorf("media_fleet_lease_lapses after Redis restarted empty = %v; want 1", n)
	}
	if n, _ := a.metric(t, "media_fleet_rooms_owned"); n != 1 {
		t.Errorf("media_fleet_rooms_owned = %v; want 1 (kept; taken was lost)", n)
	}
}

// Entries in Redis that no instance wrote (not JSON, no TTL) block
// nothing: a room entry is replaced by a placement, an instance entry is
// no instance.
func TestRedisGarbageEntries(t *testing.T) {
	open, srv := redisBackend(t).start(t)
	a := join(t, open(t), "a", "ams", fleet.Load{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	for key, v := range map[string]string{
		"media:fleet:room:r":         "not json",
		"media:fleet:room:r2":        `{"token":"t","url":"http://a.test","owner":"a"}`, // a claim, not as an instance writes it
		"media:fleet:instance:ghost": "not json",
		"media:fleet:instance:liar":  `{"id":"other","url":"http://liar.test"}`,
	} {
		if err := rdb.Set(t.Context(), key, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Listed as registered, as a registration would.
	if err := rdb.SAdd(t.Context(), "media:fleet:instances", "ghost", "liar").Err(); err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{"r", "r2"} {
		owner, err := a.Place(t.Context(), room, "ams")
		if err != nil || owner.ID != "a" {
			t.Errorf("Place(%s) over a garbage entry = %s, %v; want a", room, owner.ID, err)
		}
		if cur, _, err := a.store.Lookup(t.Context(), room); err != nil || cur.Owner != "a" || cur.Token == "t" {
			t.Errorf("entry of %s after Place = %+v, %v; want a's new claim", room, cur, err)
		}
	}
	all, err := a.store.Instances(t.Context())
	if err != nil || len(all) != 1 || all[0].ID != "a" {
		t.Errorf("Instances() = %+v, %v; want only a", all, err)
	}
	if _, ok, err := a.store.Instance(t.Context(), "liar"); err != nil || ok {
		t.Errorf("Instance(liar), an entry naming another id = %v, %v; want not registered", ok, err)
	}
}

// redisBackend is the Redis entry of backends.
func redisBackend(t *testing.T) backend {
	t.Helper()
	for _, b := range backends {
		if b.name == "redis" {
			return b
		}
	}
	t.Fatal("no redis backend")
	return backend{}
}
