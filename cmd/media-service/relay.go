package main

import (
	"context"
	"log/slog"
	"net"

	"go.opentelemetry.io/otel/metric"

	"github.com/media-service/media-service/edge"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/turn"
)

// relay adapts the TURN server to edge.Relay. The turn package does not
// import edge (the interface belongs to its consumer), so the ICE server
// list is converted here; Drain and Close are the server's own.
type relay struct{ *turn.Server }

// ICEServers returns the TURN servers with fresh credentials for identity.
func (r relay) ICEServers(identity string) []edge.ICEServer {
	list := r.Server.ICEServers(identity)
	out := make([]edge.ICEServer, len(list))
	for i, s := range list {
		out[i] = edge.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential}
	}
	return out
}

// newRelay binds the TURN relay, or returns nil when MEDIA_TURN_ENABLED is
// false. Its peer policy lets it reach the media engine's own sockets.
// Relayed media to and from the engine's UDP socket is handed over in
// memory.
func newRelay(cfg turn.Config, log *slog.Logger, meter metric.Meter, media *sfu.Engine) (*turn.Server, error) {
	if !cfg.Enabled {
		log.Info("turn_disabled")
		return nil, nil
	}
	var own []net.Addr
	if a := media.UDPAddr(); a != nil {
		own = append(own, a)
	}
	if a := media.TCPAddr(); a != nil {
		own = append(own, a)
	}
	return turn.New(cfg, turn.Options{Log: log, Meter: meter, Media: own, Handoff: media.Handoff()})
}

// edgeRelay is t as the instance's relay, or no relay when t is nil (an
// interface holding a nil pointer would not compare equal to nil).
func edgeRelay(t *turn.Server) edge.Relay {
	if t == nil {
		return nil
	}
	return relay{t}
}

// runRelay serves t until the returned stop is called. The edge drain
// closes the relay at its step 4; stop closes it too (Close is idempotent),
// for every other way out of serve, and waits for Run to return.
func runRelay(t *turn.Server, log *slog.Logger) (stop func()) {
	if t == nil {
		return func() {}
	}
	done := make(chan error, 1)
	go func() { done <- t.Run(context.Background()) }()
	return func() {
		_ = t.Close()
		if err := <-done; err != nil {
			log.Warn("turn_run_failed", "err", err)
		}
	}
}
