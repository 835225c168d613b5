package edge

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/media-service/media-service/edge/webhook"
)

// hookReceiver is a real HTTP receiver of the instance's webhooks that
// keeps every event, checking its signature.
type hookReceiver struct {
	mu     sync.Mutex
	events []webhook.Event
	badSig int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev webhook.Event
	h.mu.Lock()
	defer h.mu.Unlock()
	if !webhook.Verify(testKeys.Secret, body, r.Header.Get(webhook.SignatureHeader)) {
		h.badSig++
	}
	if err := json.Unmarshal(body, &ev); err == nil {
		h.events = append(h.events, ev)
	}
}

// names lists the events received, as "event:identity" (or "event").
func (h *hookReceiver) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, ev := range h.events {
		n := ev.Event
		if ev.Participant != nil {
			n += ":" + ev.Participant.Identity
		}
		if ev.Track != nil {
			n += ":" + ev.Track.Source
		}
		out = append(out, n)
	}
	return out
}

// withWebhooks makes the instance notify urls, and closes the notifier
// after the instance.
func withWebhooks(t *testing.T, urls ...string) func(*Options) {
	t.Helper()
	n, err := webhook.New(webhook.Config{URLs: urls, QueueSize: 100, Timeout: 5 * time.Second, RetryFor: 10 * time.Second},
		testKeys.Secret, slog.New(slog.DiscardHandler), noop.NewMeterProvider().Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // registered first: runs after the server's stop
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return func(o *Options) { o.Webhooks = n }
}

// TestWebhooksInOrder: a room's whole life reaches the receiver, each
// event once, in the order it happened, signed with the API secret.
func TestWebhooksInOrder(t *testing.T) {
	h := &hookReceiver{}
	recv := httptest.NewServer(h)
	t.Cleanup(recv.Close)
	ts := startServer(t, nil, withWebhooks(t, recv.URL))
	waitN := func(n int) {
		t.Helper()
		waitFor(t, 10*time.Second, "webhook events", func() bool { return len(h.names()) >= n })
	}
	ann := ts.dial(t, "r", "ann")
	publish(t, ann)
	waitN(4)
	bob := ts.dial(t, "r", "bob")
	waitN(5)
	awaitMedia(t, bob, ann)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ann.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitN(8)
	if err := bob.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitN(10)

	got := strings.Join(h.names(), " ")
	// Within a leave the order of the publisher's two tracks is the map's.
	got = strings.Replace(got, "track_published:ann:microphone track_published:ann:camera", "track_published:ann:camera track_published:ann:microphone", 1)
	got = strings.Replace(got, "track_unpublished:ann:microphone track_unpublished:ann:camera", "track_unpublished:ann:camera track_unpublished:ann:microphone", 1)
	want := "room_started participant_joined:ann track_published:ann:camera track_published:ann:microphone " +
		"participant_joined:bob track_unpublished:ann:camera track_unpublished:ann:microphone participant_left:ann " +
		"participant_left:bob room_finished"
	if got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.badSig != 0 {
		t.Errorf("%d events with a bad signature; want 0", h.badSig)
	}
}

// TestWebhookReceiverDownJoins: with one receiver refusing connections
// and another that never answers, joins and leaves go on as without
// webhooks: Notify waits on neither.
func TestWebhookReceiverDownJoins(t *testing.T) {
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	t.Cleanup(func() { close(hang); hanging.Close() })
	ts := startServer(t, nil, withWebhooks(t, hanging.URL, down.URL))
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		c := ts.dial(t, "r", id)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.Leave(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: Leave = %v", id, err)
		}
	}
	ts.dial(t, "r", "f")
}
