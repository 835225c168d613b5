package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/media-service/media-service/edge/client"
)

// TestCloseDuringNegotiationLeaksNoAgent closes clients in the middle of
// their first negotiation, a Publish on another goroutine. Pion creates a
// connection's ICE agent lazily and does not close one created after
// PeerConnection.Close, so a step that raced Close used to leave the
// agent's goroutines behind (and a sender added after Close kept Close
// waiting for its RTCP reader). Each client is alone in its room, so
// nothing of it may outlive its Close.
func TestCloseDuringNegotiationLeaksNoAgent(t *testing.T) {
	url := startEdge(t)
	api, err := client.NewAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The server's own goroutines may start after startEdge returns; they
	// end with it, at cleanup.
	before := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("net/http.(*Server).Serve"),
		goleak.IgnoreAnyFunction("github.com/media-service/media-service/edge.(*rooms).speakersLoop")}
	for i := range 30 {
		c, err := client.Dial(ctx, url, token(t, "r", "guest"), client.Options{API: api})
		if err != nil {
			t.Fatalf("Dial %d: %v", i, err)
		}
		audio, err := client.NewAudioTrack("guest-mic")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = c.Publish(ctx, audio) })
		wg.Go(func() { _ = c.Close() })
		wg.Wait()
	}
	if err := goleak.Find(before...); err != nil {
		t.Errorf("goroutines left after closing mid-negotiation: %v", err)
	}
}
