package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// baseServiceEnv binds everything to loopback on free ports, so parallel
// test runs never collide.
var baseServiceEnv = []string{
	"PORT=0",
	"MEDIA_HTTP_HOST=127.0.0.1",
	"MEDIA_OPS_PORT=0",
	"MEDIA_OPS_HOST=127.0.0.1",
	"MEDIA_ICE_UDP_PORT=0",
	"MEDIA_ICE_TCP_PORT=0",
	"MEDIA_TURN_UDP_PORT=0",
	"MEDIA_TURN_TCP_PORT=0",
	"MEDIA_TURN_PUBLIC_HOST=127.0.0.1",
	// A Chromium tab starved of CPU can take seconds per answer; the
	// browser suite is not where this bound is tested.
	"MEDIA_NEGOTIATION_TIMEOUT=60s",
}

// service is one running media-service process.
type service struct {
	t      *testing.T
	cmd    *exec.Cmd
	URL    string // http://127.0.0.1:port
	Addr   string // 127.0.0.1:port
	logs   *logBook
	stderr *lockedBuffer
	exited chan struct{} // closed once the process has exited and its output is read
	err    error         // the exit error, set before exited closes
}

// startService runs the service with the base environment plus env (later
// entries win) and waits for its server_started log line.
func startService(t *testing.T, env ...string) *service {
	t.Helper()
	s := &service{t: t, logs: newLogBook(), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(serviceBinary(t))
	s.cmd.Env = append(append(cleanEnv(), baseServiceEnv...), env...)
	s.cmd.Stderr = s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("service stdout pipe: %v", err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start service: %v", err)
	}
	go s.read(stdout)
	t.Cleanup(s.stop)
	started, err := s.logs.wait(s.exited, "server_started", 20*time.Second)
	if err != nil {
		t.Fatalf("service did not start: %v\nstderr: %s", err, s.stderr)
	}
	s.Addr, _ = started["http_addr"].(string)
	s.URL = "http://" + s.Addr
	return s
}

// read collects the JSON log lines until the process closes stdout, then
// reaps the process.
func (s *service) read(stdout interface{ Read([]byte) (int, error) }) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		s.logs.add(sc.Text())
	}
	s.err = s.cmd.Wait()
	close(s.exited)
}

// signal sends sig to the service.
func (s *service) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal service %v: %v", sig, err)
	}
}

// waitExit waits for the process to end and returns its exit error.
func (s *service) waitExit(timeout time.Duration) error {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.err
	case <-time.After(timeout):
		s.t.Fatalf("service still running %s after it was told to stop", timeout)
		return nil
	}
}

// stop ends the service (a drain with no sessions is quick; a second
// signal skips the wait) and dumps its output when the test failed.
func (s *service) stop() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.exited
			}
		}
	}
	if s.t.Failed() {
		s.t.Logf("service log:\n%s\nservice stderr:\n%s", s.logs.text(), s.stderr)
	}
}

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

// logBook holds a process's JSON log lines and wakes waiters on each one.
type logBook struct {
	mu      sync.Mutex
	lines   []map[string]any
	raw     []string
	changed chan struct{} // closed and replaced on each new line
}

func newLogBook() *logBook { return &logBook{changed: make(chan struct{})} }

func (b *logBook) add(line string) {
	var m map[string]any
	_ = json.Unmarshal([]byte(line), &m) // a non-JSON line is kept raw only
	b.mu.Lock()
	defer b.mu.Unlock()
	b.raw = append(b.raw, line)
	if m != nil {
		b.lines = append(b.lines, m)
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// find returns the first line whose msg is msg.
func (b *logBook) find(msg string) (map[string]any, bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if l["msg"] == msg {
			return l, true, b.changed
		}
	}
	return nil, false, b.changed
}

// wait returns the first line whose msg is msg, waiting for it until the
// timeout or until exited closes.
func (b *logBook) wait(exited <-chan struct{}, msg string, timeout time.Duration) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		l, ok, changed := b.find(msg)
		if ok {
			return l, nil
		}
		select {
		case <-changed:
		case <-exited:
			if l, ok, _ := b.find(msg); ok {
				return l, nil
			}
			return nil, fmt.Errorf("process exited before logging %s", msg)
		case <-ctx.Done():
			return nil, errors.New("no " + msg + " log line within " + timeout.String())
		}
	}
}

// count returns how many lines have that msg.
func (b *logBook) count(msg string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

func (b *logBook) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.raw, "\n")
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
