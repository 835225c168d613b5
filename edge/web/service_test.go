package web_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/media-service/media-service/internal/servicetest"
)

// The browser tests run the real service binary, as an operator would,
// so they cover the wiring in cmd/media-service and not only package edge.

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// serviceBinary builds cmd/media-service once per test process, or returns
// $BROWSER_TEST_SERVICE to run the suite against a binary built elsewhere
// (a release candidate, say).
func serviceBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("BROWSER_TEST_SERVICE"); bin != "" {
		return bin
	}
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "media-web-test-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "media-service")
		cmd := exec.Command("go", "build", "-o", build.bin, "github.com/media-service/media-service/cmd/media-service")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build cmd/media-service: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

func removeServiceBinary() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
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
}

// service is one running media-service process.
type service = servicetest.Process

// startService runs the service on loopback with the browser suite's
// environment plus env (later entries win) and waits for its
// server_started event.
func startService(t *testing.T, env ...string) *service {
	t.Helper()
	base := append(append(cleanEnv(), servicetest.LoopbackEnv...), browserEnv...)
	return servicetest.Start(t, serviceBinary(t), append(base, env...))
}

// serviceURL is the base URL of s's HTTP listener.
func serviceURL(s *service) string { return "http://" + s.HTTPAddr }

// cleanEnv is the test's environment without anything that configures the
// service, so a developer's shell cannot change what the tests run.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MEDIA_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "PORT=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
