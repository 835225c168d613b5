package telemetry_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
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

// loopbackEnv binds every listener of the service to a free port on
// 127.0.0.1. The process environment is not inherited, so an operator's
// OTEL_* or FLY_* variables cannot leak into the test.
var loopbackEnv = []string{
	"PORT=0", "MEDIA_HTTP_HOST=127.0.0.1",
	"MEDIA_OPS_PORT=0", "MEDIA_OPS_HOST=127.0.0.1",
	"MEDIA_ICE_UDP_PORT=0", "MEDIA_ICE_TCP_PORT=0", "MEDIA_ICE_BIND_ADDR=127.0.0.1",
	"MEDIA_TURN_UDP_PORT=0", "MEDIA_TURN_TCP_PORT=0", "MEDIA_TURN_BIND_ADDR=127.0.0.1", "MEDIA_TURN_TCP_BIND_ADDR=127.0.0.1",
}

// event is one JSON log line of the service.
type event map[string]any

func (e event) msg() string { s, _ := e["msg"].(string); return s }

// process is a running media-service and the log events it wrote.
type process struct {
	cmd      *exec.Cmd
	httpAddr string
	opsAddr  string
	events   chan event
	exited   chan struct{} // closed once the process has been waited for
	waitErr  error

	mu  sync.Mutex // guards log
	log []event
}

// startProcess runs bin with loopbackEnv plus env and waits for
// server_started, whose fields give the bound addresses.
func startProcess(t *testing.T, bin string, env ...string) *process {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(append([]string{"HOME=" + t.TempDir()}, loopbackEnv...), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &process{cmd: cmd, events: make(chan event, 1024), exited: make(chan struct{})}
	go p.read(stdout)
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	started := p.waitFor(t, "server_started", 30*time.Second)
	p.httpAddr, _ = started["http_addr"].(string)
	p.opsAddr, _ = started["ops_addr"].(string)
	return p
}

func (p *process) read(r io.Reader) {
	defer close(p.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			e = event{"msg": "unparsed", "line": sc.Text()}
		}
		p.mu.Lock()
		p.log = append(p.log, e)
		p.mu.Unlock()
		select {
		case p.events <- e:
		default: // nobody waits for this many events; the log keeps them
		}
	}
	p.waitErr = p.cmd.Wait()
	close(p.events)
}

// waitFor returns the next event named msg.
func (p *process) waitFor(t *testing.T, msg string, within time.Duration) event {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case e, ok := <-p.events:
			if !ok {
				t.Fatalf("media-service exited before logging %s; log: %v", msg, p.logged())
			}
			if e.msg() == msg {
				return e
			}
		case <-timeout:
			t.Fatalf("media-service did not log %s within %s; log: %v", msg, within, p.logged())
		}
	}
}

func (p *process) logged() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event(nil), p.log...)
}

// stop sends sig and returns the exit code once the process has ended.
func (p *process) stop(t *testing.T, sig syscall.Signal, within time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", sig, err)
	}
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("media-service still running %s after %s; log: %v", within, sig, p.logged())
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	return 0
}
