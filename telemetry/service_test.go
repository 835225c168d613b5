package telemetry_test

import (
	"github.com/media-service/media-service/internal/servicetest"
	"os/exec"
	"path/filepath"
	"testing"
)

// testVersion is linked into the binary under test, so the tests can see
// -ldflags reach service.version.
const testVersion = "v0.0.0-opskit"

// buildService builds the real binary, as an operator deploys it, into the
// test's temporary directory.
func buildService(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "media-service")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin,
		"-ldflags", "-X main.version="+testVersion, "../cmd/media-service")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/media-service: %v\n%s", err, out)
	}
	return bin
}

// process is a running media-service under test.
type process = servicetest.Process

// startProcess runs bin with the loopback listeners plus env and waits for
// server_started. The process environment is not inherited, so an
// operator's OTEL_* or FLY_* variables cannot leak into the test.
func startProcess(t *testing.T, bin string, env ...string) *process {
	t.Helper()
	base := append([]string{"HOME=" + t.TempDir(), "MEDIA_ICE_BIND_ADDR=127.0.0.1"}, servicetest.LoopbackEnv...)
	return servicetest.Start(t, bin, append(base, env...))
}
