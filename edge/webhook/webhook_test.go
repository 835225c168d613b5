package webhook

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

const testSecret = "webhook-test-secret-0123456789abcdef"

// receiver is a real HTTP receiver that records every request's event
// and whether its signature was valid; answer decides each status.
type receiver struct {
	srv    *httptest.Server
	answer func(attempt int) int
	before func() // runs first in every request, unlocked; nil: nothing

	mu       sync.Mutex
	attempts int
	got      []Event // accepted (2xx) events, in arrival order
	badSig   int
}

func newReceiver(t *testing.T, answer func(attempt int) int) *receiver {
	t.Helper()
	return newReceiverBefore(t, answer, nil)
}

func newReceiverBefore(t *testing.T, answer func(attempt int) int, before func()) *receiver {
	t.Helper()
	r := &receiver{answer: answer, before: before}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	if r.before != nil {
		r.before()
	}
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.attempts++
	status := r.answer(r.attempts)
	if !Verify(testSecret, body, req.Header.Get(SignatureHeader)) {
		r.badSig++
	}
	var ev Event
	if json.Unmarshal(body, &ev) == nil && status/100 == 2 {
		r.got = append(r.got, ev)
	}
	r.mu.Unlock()
	w.WriteHeader(status)
}

func (r *receiver) events() ([]Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.got...), r.badSig
}

func ok(int) int { return http.StatusOK }

// newNotifier makes a notifier for urls with cfg's bounds, and the
// reader of its metrics; it is closed when the test ends.
func newNotifier(t *testing.T, cfg Config, urls ...string) (*Notifier, *sdkmetric.ManualReader) {
	t.Helper()
	cfg.URLs = urls
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 100
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 20 * time.Second
	}
	reader := sdkmetric.NewManualReader()
	n, err := New(cfg, testSecret, slog.New(slog.DiscardHandler), sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n, reader
}

// count reads media_webhook_events{result}.
func count(t *testing.T, reader *sdkmetric.ManualReader, result string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, _ := m.Data.(metricdata.Sum[int64])
			for _, dp := range sum.DataPoints {
				if m.Name == "media_webhook_events" && dp.Attributes.Equals(ptr(attribute.NewSet(attribute.String("result", result)))) {
					return dp.Value
				}
			}
		}
	}
	return 0
}

func ptr[T any](v T) *T { return &v }

// waitEvents polls r until it has accepted n events.
func waitEvents(t *testing.T, r *receiver, n int, within time.Duration) []Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, _ := r.events()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver accepted %d events within %s; want %d", len(got), within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func roomEvent(kind, room string, i int) Event {
	return Event{Event: kind, Room: Room{Name: room}, Participant: &Participant{ID: "PA_" + strconv.Itoa(i), Identity: "p" + strconv.Itoa(i)}}
}

// TestDeliveredInOrderSigned: every event reaches every URL once, in
// the order notified, with a valid signature and a distinct id.
func TestDeliveredInOrderSigned(t *testing.T) {
	a, b := newReceiver(t, ok), newReceiver(t, ok)
	n, reader := newNotifier(t, Config{}, a.srv.URL, b.srv.URL)
	const events = 30
	for i := range events {
		n.Notify(roomEvent(ParticipantJoined, "r", i))
	}
	for _, r := range []*receiver{a, b} {
		got := waitEvents(t, r, events, 10*time.Second)
		ids := map[string]bool{}
		for i, ev := range got {
			if ev.Participant.ID != "PA_"+strconv.Itoa(i) || ev.Event != ParticipantJoined || ev.Room.Name != "r" {
				t.Fatalf("event %d = %+v; want participant_joined of PA_%d in r", i, ev, i)
			}
			ids[ev.ID] = true
		}
		if _, bad := r.events(); bad != 0 || len(ids) != events {
			t.Errorf("%d events with a bad signature, %d distinct ids; want 0 and %d", bad, len(ids), events)
		}
	}
	waitCount(t, reader, resultDelivered, 2*events)
}

// waitCount polls the result counter until it reads want.
func waitCount(t *testing.T, reader *sdkmetric.ManualReader, result string, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for count(t, reader, result) != want {
		if time.Now().After(deadline) {
			t.Fatalf("media_webhook_events{result=%s} = %d; want %d", result, count(t, reader, result), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRetriedAfter503: a receiver answering 503 twice, then 200, gets
// each event once, still in order.
func TestRetriedAfter503(t *testing.T) {
	r := newReceiver(t, func(attempt int) int {
		if attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	n, reader := newNotifier(t, Config{}, r.srv.URL)
	for i := range 3 {
		n.Notify(roomEvent(ParticipantJoined, "r", i))
	}
	got := waitEvents(t, r, 3, 10*time.Second)
	for i, ev := range got {
		if ev.Participant.ID != "PA_"+strconv.Itoa(i) {
			t.Errorf("event %d is %s; want PA_%d", i, ev.Participant.ID, i)
		}
	}
	if len(got) != 3 {
		t.Errorf("receiver accepted %d events; want each of 3 once", len(got))
	}
	waitCount(t, reader, resultDelivered, 3)
	if f := count(t, reader, resultFailed); f != 0 {
		t.Errorf("failed = %d; want 0", f)
	}
}

// TestRefusedNotRetried: a 4xx is the receiver's final answer.
func TestRefusedNotRetried(t *testing.T) {
	r := newReceiver(t, func(int) int { return http.StatusBadRequest })
	n, reader := newNotifier(t, Config{}, r.srv.URL)
	n.Notify(roomEvent(RoomStarted, "r", 0))
	waitCount(t, reader, resultFailed, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.attempts != 1 {
		t.Errorf("attempts = %d; want 1", r.attempts)
	}
}

// TestQueueDropsOldest: while the receiver holds the first event, a
// full queue drops its oldest, counted; the rest arrive in order.
func TestQueueDropsOldest(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	first := make(chan struct{})
	hold := newReceiverBefore(t, ok, func() {
		once.Do(func() {
			close(first)
			<-release
		})
	})
	n, reader := newNotifier(t, Config{QueueSize: 3}, hold.srv.URL)
	n.Notify(roomEvent(ParticipantJoined, "r", 0))
	<-first // the first is in flight, out of the queue
	for i := 1; i <= 9; i++ {
		n.Notify(roomEvent(ParticipantJoined, "r", i))
	}
	if d := count(t, reader, resultDropped); d != 6 {
		t.Errorf("dropped = %d; want 6 (9 queued behind a queue of 3)", d)
	}
	close(release)
	got := waitEvents(t, hold, 4, 10*time.Second)
	var ids []string
	for _, ev := range got {
		ids = append(ids, ev.Participant.ID)
	}
	if want := []string{"PA_0", "PA_7", "PA_8", "PA_9"}; !slices.Equal(ids, want) {
		t.Errorf("delivered %v; want %v", ids, want)
	}
}

// TestCloseFlushes: Close delivers what is queued, retries included,
// before it returns.
func TestCloseFlushes(t *testing.T) {
	r := newReceiver(t, func(attempt int) int {
		if attempt == 1 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	n, _ := newNotifier(t, Config{}, r.srv.URL)
	for i := range 5 {
		n.Notify(roomEvent(ParticipantLeft, "r", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	n.Close(ctx)
	if got, _ := r.events(); len(got) != 5 {
		t.Errorf("after Close the receiver has %d events; want 5", len(got))
	}
	if ctx.Err() != nil {
		t.Error("Close returned only at its deadline; want once the queue drained")
	}
}

// TestCloseBounded: a receiver that never answers holds Close only
// until its context ends, and one that is down never blocks Notify.
func TestCloseBounded(t *testing.T) {
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(func() { close(hang); hanging.Close() })
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connection refused from now on
	n, _ := newNotifier(t, Config{QueueSize: 10}, hanging.URL, downURL)
	for i := range 1000 { // far beyond the queue: the oldest are dropped, nothing waits
		n.Notify(roomEvent(TrackPublished, "r", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	n.Close(ctx) // returns once ctx ends: the senders' attempts are cancelled
}

// TestConfigValidate: bad values name their variable.
func TestConfigValidate(t *testing.T) {
	good := Config{QueueSize: 1, Timeout: time.Second, RetryFor: time.Second}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"ftp url", func(c *Config) { c.URLs = []string{"ftp://x"} }, "MEDIA_WEBHOOK_URLS"},
		{"no host", func(c *Config) { c.URLs = []string{"http://"} }, "MEDIA_WEBHOOK_URLS"},
		{"queue 0", func(c *Config) { c.QueueSize = 0 }, "MEDIA_WEBHOOK_QUEUE"},
		{"retry below timeout", func(c *Config) { c.RetryFor = time.Millisecond }, "MEDIA_WEBHOOK_RETRY_FOR"},
		{"tiny timeout", func(c *Config) { c.Timeout = time.Millisecond }, "MEDIA_WEBHOOK_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v; want an error naming %s", err, tc.want)
			}
		})
	}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}
