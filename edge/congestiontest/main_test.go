package congestiontest

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

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// build is the media-service binary, built once per test process by the
// first test that runs it and removed by TestMain.
var build struct {
	once     sync.Once
	dir, bin string
	err      error
}

// serviceBinary builds cmd/media-service, once.
func serviceBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "congestiontest-"); build.err != nil {
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

// cleanEnv is the test's environment without anything that configures
// the service, so a developer's shell cannot change what the tests run.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEDIA_") && !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "PORT=") {
			env = append(env, kv)
		}
	}
	return env
}
