package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/webhook"
)

// TestWebhooksDeliveredAtDrain: the binary signs its webhooks with the
// API secret, and a drain delivers what is still queued (here behind a
// receiver that answered 503 at first) before the process exits: the
// room's last events, which the drain itself causes, arrive too.
func TestWebhooksDeliveredAtDrain(t *testing.T) {
	var mu sync.Mutex
	var got []string
	attempts, badSig := 0, 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !webhook.Verify(auth.DevAPISecret, body, r.Header.Get(webhook.SignatureHeader)) {
			badSig++
		}
		var ev webhook.Event
		_ = json.Unmarshal(body, &ev)
		got = append(got, ev.Event)
	}))
	t.Cleanup(recv.Close)

	s := startService(t, "MEDIA_DRAIN_TIMEOUT=1s", "MEDIA_WEBHOOK_URLS="+recv.URL, "MEDIA_WEBHOOK_DRAIN_TIMEOUT=10s")
	joinDev(t, s, "hooks", "alice")
	s.Signal(t, syscall.SIGTERM) // alice stays: the drain closes her session at its deadline
	if code := s.WaitExit(t, 20*time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "room_started participant_joined participant_left room_finished"
	if g := strings.Join(got, " "); g != want || badSig != 0 {
		t.Errorf("delivered before exit: %q (%d with a bad signature); want %q, all signed", g, badSig, want)
	}
}
