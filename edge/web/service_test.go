package web_test

import (
	"os"
	"testing"

	"github.com/media-service/media-service/internal/servicetest"
)

// The browser tests run the real service binary, as an operator would,
// so they cover the wiring in cmd/media-service and not only package edge.

// serviceBinary is the binary the suite runs: cmd/media-service built
// once per test process, or $BROWSER_TEST_SERVICE to run the suite
// against a binary built elsewhere (a release candidate, say).
func serviceBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("BROWSER_TEST_SERVICE"); bin != "" {
		return bin
	}
	return servicetest.Binary(t)
}

// browserEnv is what the browser suite changes in servicetest.LoopbackEnv.
var browserEnv = []string{
	// TURN listens on every interface, as by default, so its relayed
	// addresses are on the host's own IPv4, where the SFU's host candidates
	// are; the tabs still reach TURN itself on loopback. (LoopbackEnv binds
	// TURN to 127.0.0.1, whose relayed addresses reach only an SFU bound
	// to loopback.)
	"MEDIA_TURN_BIND_ADDR=", "MEDIA_TURN_TCP_BIND_ADDR=",
	"MEDIA_TURN_PUBLIC_HOST=127.0.0.1",
	// A Chromium tab starved of CPU can take seconds per answer; the
	// browser suite is not where this bound is tested.
	"MEDIA_NEGOTIATION_TIMEOUT=60s",
	// The log printed when a test fails has the server's decisions in
	// it: the bandwidth allocation of every subscriber connection and the
	// layers each simulcast publisher is asked for.
	"MEDIA_LOG_LEVEL=debug",
}

// service is one running media-service process.
type service = servicetest.Process

// startService runs the service on loopback with the browser suite's
// environment plus env (later entries win) and waits for its
// server_started event.
func startService(t *testing.T, env ...string) *service {
	t.Helper()
	base := append(append(servicetest.CleanEnv(), servicetest.LoopbackEnv...), browserEnv...)
	return servicetest.Start(t, serviceBinary(t), append(base, env...))
}

// serviceURL is the base URL of s's HTTP listener.
func serviceURL(s *service) string { return "http://" + s.HTTPAddr }
