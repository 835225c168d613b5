package servicetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// build is the media-service binary Binary builds, once per test process;
// Main removes it.
var build struct {
	once     sync.Once
	dir, bin string
	err      error
}

// Binary builds cmd/media-service once per test process and returns its
// path. The package's TestMain must be Main, which removes it.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "media-service-test-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "media-service")
		out, err := exec.Command("go", "build", "-o", build.bin, "github.com/media-service/media-service/cmd/media-service").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build cmd/media-service: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// Main runs a package's tests, then each of stop (a shared browser, say),
// removes the binary Binary built, and fails a passing run if a goroutine
// outlived the tests: the packages that run the binary also run log
// readers, clients and relays of their own.
func Main(m *testing.M, stop ...func()) {
	code := m.Run()
	for _, f := range stop {
		f()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on a successful test run: %v\n", err)
			code = 1
		}
	}
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// CleanEnv is the test process's environment without anything that
// configures the service (MEDIA_*, OTEL_*, PORT), so a developer's shell
// cannot change what a test runs.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEDIA_") && !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "PORT=") {
			env = append(env, kv)
		}
	}
	return env
}
