package edge

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/media-service/media-service/edge/signal"
)

// TestDrainClosesSessionsAtDeadline: on shutdown every client is told the
// deadline, new joins get 503, a client that leaves is counted, one that
// stays is closed at the deadline with leave server_shutdown and 1001.
func TestDrainClosesSessionsAtDeadline(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.DrainTimeout = 2 * time.Second })
	leaver, stayer := ts.dial(t, "demo", "leaver"), ts.dial(t, "demo", "stayer")
	publish(t, stayer)
	started := time.Now()
	ts.cancel(&ShutdownCause{Reason: "test"})

	m := waitEvent(t, leaver, 2*time.Second, "draining to leaver", isType(signal.TypeDraining))
	if d := m.Deadline.Sub(started); d < time.Second || d > 3*time.Second {
		t.Errorf("draining deadline is %s after the drain began; want about 2s", d)
	}
	waitEvent(t, stayer, 2*time.Second, "draining to stayer", isType(signal.TypeDraining))

	de := dialRefusal(t, ts, ts.token(t, "demo", "late", bothGrants), "")
	if de.Status != http.StatusServiceUnavailable || de.Code != "draining" || de.RetryAfter <= 0 {
		t.Errorf("join while draining = %d %q retry %s; want 503 draining with Retry-After", de.Status, de.Code, de.RetryAfter)
	}
	leaveNormally(t, leaver)

	select {
	case <-stayer.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session that stayed was not closed at the deadline")
	}
	if took := time.Since(started); took < 1500*time.Millisecond {
		t.Errorf("the staying session was closed %s into a 2s drain; want at the deadline", took)
	}
	if got := stayer.LeaveReason(); got != signal.ReasonServerShutdown {
		t.Errorf("leave reason at the deadline = %q; want %q", got, signal.ReasonServerShutdown)
	}
	var ce *websocket.CloseError
	if !errors.As(stayer.Err(), &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("close at the deadline = %v; want 1001", stayer.Err())
	}
	if err := <-ts.runErr; err != nil {
		t.Fatalf("Run() = %v; want nil", err)
	}
	ts.runErr <- nil
	ev := ts.logs.find("server_stopped")
	if ev == nil || ev["closed_sessions"] != float64(2) || ev["closed_at_deadline"] != float64(1) {
		t.Errorf("server_stopped = %v; want closed_sessions 2, closed_at_deadline 1", ev)
	}
	if n := ts.srv.Sessions().Len(); n != 0 {
		t.Errorf("sessions after the drain = %d; want 0", n)
	}
}
