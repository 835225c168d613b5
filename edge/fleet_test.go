package edge

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/edge/signal"
)

// startFleetServer runs an instance that is one of a fleet on store, as
// the Fly app app. Its port is chosen first: its public URL names it.
func startFleetServer(t *testing.T, store fleet.Store, app string, edits ...func(*Config)) *testServer {
	t.Helper()
	return startFleetServerIn(t, store, app, "", edits...)
}

// startFleetServerIn is startFleetServer for an instance in region: a
// join that reaches it with no Fly-Region header prefers it.
func startFleetServerIn(t *testing.T, store fleet.Store, app, region string, edits ...func(*Config)) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := fleet.Config{PublicURL: "http://127.0.0.1:" + strconv.Itoa(port), App: app, Region: region, LeaseTTL: 2 * time.Second}
	f, err := fleet.New(cfg, cfg.Instance("i"+strconv.Itoa(port)), store, slog.New(slog.DiscardHandler), noop.NewMeterProvider().Meter("fleet"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; f.Close() }) // after the server's own cleanup
	return startServer(t, func(c *Config) {
		c.Port = port
		for _, e := range edits {
			e(c)
		}
	}, func(o *Options) { o.Fleet = f })
}

// waitRegistered waits until store holds n instances.
func waitRegistered(t *testing.T, store fleet.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		insts, err := store.Instances(context.Background())
		if err == nil && len(insts) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store holds %d instances (%v); want %d", len(insts), err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJoinRoutedToOwner: a join that reaches an instance which does not
// own the room goes to the owner: on Fly with a fly-replay header naming
// the owner's app, and, once the proxy has replayed it already, with a
// redirect the client follows to the owner, where it joins.
func TestJoinRoutedToOwner(t *testing.T) {
	store := fleet.NewMemoryStore()
	a := startFleetServer(t, store, "media-a")
	b := startFleetServer(t, store, "media-b")
	waitRegistered(t, store, 2)
	b.dial(t, "r", "bob") // the room is placed at b

	tok := a.token(t, "r", "ann", bothGrants)
	resp, err := http.Get(a.http + "/v1/rtc?access_token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("Fly-Replay") != "app=media-b" {
		t.Errorf("join of b's room at a = %d, fly-replay %q; want 409 with app=media-b", resp.StatusCode, resp.Header.Get("Fly-Replay"))
	}

	replayed := http.Header{"Fly-Replay-Src": {"instance=x;app=media-a"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, a.url, tok, client.Options{API: a.api, Header: replayed})
	if err != nil {
		t.Fatalf("join of b's room at a, replayed already: %v", err)
	}
	defer c.Close()
	if c.URL() != b.url || c.Redirects() != 1 {
		t.Errorf("joined at %s after %d redirects; want %s after 1", c.URL(), c.Redirects(), b.url)
	}
	if got := len(c.Joined().Participants); got != 1 {
		t.Errorf("joined a room of %d others; want bob's room", got)
	}
	for via, want := range map[string]int64{viaFlyReplay: 1, viaRedirect: 1} {
		if got := a.counter(t, "media_joins_routed", "via", via); got != want {
			t.Errorf("media_joins_routed{via=%s} at a = %d; want %d", via, got, want)
		}
	}
}

// TestDrainNamesTheSibling: a draining instance of a fleet hands its room
// to the sibling and names the sibling's URL in `draining`; alone, it
// names none and drains as before.
func TestDrainNamesTheSibling(t *testing.T) {
	for _, tc := range []struct {
		name     string
		siblings int
	}{{"sibling", 1}, {"alone", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			store := fleet.NewMemoryStore()
			a := startFleetServer(t, store, "")
			var want string
			for range tc.siblings {
				want = startFleetServer(t, store, "").url
			}
			waitRegistered(t, store, 1+tc.siblings)
			drainings := make(chan *signal.Message, 1)
			c := a.dialWith(t, a.token(t, "r", "ann", bothGrants), client.Options{OnEvent: func(m *signal.Message) {
				if m.Type == signal.TypeDraining {
					select {
					case drainings <- m:
					default: // OnEvent must not block
					}
				}
			}})
			a.cancel(&ShutdownCause{Reason: "test"})
			select {
			case m := <-drainings:
				if m.URL != want || m.Deadline.IsZero() {
					t.Errorf("draining = url %q deadline %v; want url %q and a deadline", m.URL, m.Deadline, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no draining message within 10s")
			}
			_ = c.Leave(context.Background())
			a.stop(t)
			moved := "moved"
			if tc.siblings == 0 {
				moved = "no_sibling"
			}
			if got := a.counter(t, "media_rooms_moved", "result", moved); got != 1 {
				t.Errorf("media_rooms_moved{result=%s} = %d; want 1", moved, got)
			}
		})
	}
}

// TestLostRoomMovesItsParticipants: when the directory gives a room this
// instance serves to another instance (claimed there while this one could
// not renew), its participants are told, with the drain's message, to
// join at the new owner.
func TestLostRoomMovesItsParticipants(t *testing.T) {
	store := fleet.NewMemoryStore()
	a := startFleetServer(t, store, "")
	b := startFleetServer(t, store, "")
	waitRegistered(t, store, 2)
	drainings := make(chan *signal.Message, 1)
	a.dialWith(t, a.token(t, "r", "ann", bothGrants), client.Options{OnEvent: func(m *signal.Message) {
		if m.Type == signal.TypeDraining {
			select {
			case drainings <- m:
			default: // OnEvent must not block
			}
		}
	}})
	ctx := context.Background()
	cur, ok, err := store.Lookup(ctx, "r")
	if err != nil || !ok {
		t.Fatalf("Lookup(r) = %v, %v, %v; want a's claim", cur, ok, err)
	}
	other := b.srv.routing.dir.Self()
	if _, err := store.Claim(ctx, "r", cur, fleet.Claim{Owner: other.ID, URL: other.URL, Token: "taken-over"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-drainings:
		if m.URL != b.url {
			t.Errorf("draining url = %q; want b's %q", m.URL, b.url)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no draining message within 10s of the room being claimed away")
	}
}
