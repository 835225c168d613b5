// Package servicetest runs the built media-service binary for tests and
// reads its JSON log, so the tests of several packages exercise exactly
// what an operator runs: environment, signals, log events and exit codes.
package servicetest

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LoopbackEnv binds every listener of the service to a free port on
// loopback, so tests run in parallel with each other and other packages.
var LoopbackEnv = []string{
	"PORT=0", "MEDIA_HTTP_HOST=127.0.0.1",
	"MEDIA_OPS_PORT=0", "MEDIA_OPS_HOST=127.0.0.1",
	"MEDIA_ICE_UDP_PORT=0", "MEDIA_ICE_TCP_PORT=0",
	"MEDIA_TURN_UDP_PORT=0", "MEDIA_TURN_TCP_PORT=0", "MEDIA_TURN_BIND_ADDR=127.0.0.1", "MEDIA_TURN_TCP_BIND_ADDR=127.0.0.1",
}

// Event is one JSON log line of the service.
type Event map[string]any

// Msg is the event's name.
func (e Event) Msg() string { s, _ := e["msg"].(string); return s }

// Process is a running media-service and the log events it wrote. Its log
// reader never blocks: a service whose stdout is not read would stall
// every goroutine that logs.
type Process struct {
	// HTTPAddr and OpsAddr are the bound addresses from server_started.
	HTTPAddr, OpsAddr string

	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has been waited for
	exitErr error
	next    int // the next event WaitFor examines; the test goroutine's own

	mu      sync.Mutex    // guards seen and changed
	seen    []Event       // every event so far
	changed chan struct{} // closed and replaced when an event arrives
}

// Start runs bin with the environment env (the whole of it) and waits for
// its server_started event. Of two entries with one name the later wins,
// so a test restarts a service on the address of one that has exited by
// appending PORT=<its port> after LoopbackEnv. The process is killed when
// the test ends, and its log is written to the test's output if the test
// failed.
func Start(t *testing.T, bin string, env []string) *Process {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{}), changed: make(chan struct{})}
	go p.read(t, stdout)
	t.Cleanup(func() {
		var stacks string
		if t.Failed() {
			stacks = p.goroutines()
		}
		cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("log of %s (pid %d):\n%s", bin, cmd.Process.Pid, p.text())
			t.Logf("goroutines of %s (pid %d) when the test failed, by stack:\n%s", bin, cmd.Process.Pid, stacks)
		}
	})
	started := p.WaitFor(t, "server_started", 30*time.Second)
	p.HTTPAddr, _ = started["http_addr"].(string)
	p.OpsAddr, _ = started["ops_addr"].(string)
	return p
}

// goroutines is the service's goroutine profile, one entry per stack with
// its count, from its ops port's pprof endpoint: what a failed test shows
// of where the service was waiting (a stuck lock, a blocked write).
func (p *Process) goroutines() string {
	if p.OpsAddr == "" {
		return "(no ops address)"
	}
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + p.OpsAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func (p *Process) read(t *testing.T, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		p.mu.Lock()
		p.seen = append(p.seen, e)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	if err := sc.Err(); err != nil {
		t.Errorf("read service log: %v", err)
		io.Copy(io.Discard, r) // a full pipe would stall the service
	}
	p.exitErr = p.cmd.Wait()
	close(p.exited)
}

// WaitFor returns the next event named msg, skipping others.
func (p *Process) WaitFor(t *testing.T, msg string, within time.Duration) Event {
	t.Helper()
	timeout := time.After(within)
	for {
		p.mu.Lock()
		for p.next < len(p.seen) {
			e := p.seen[p.next]
			p.next++
			if e.Msg() == msg {
				p.mu.Unlock()
				return e
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.exited:
			p.mu.Lock()
			more := p.next < len(p.seen)
			p.mu.Unlock()
			if !more {
				t.Fatalf("service exited before logging %q (its log follows at the end of the test)", msg)
			}
		case <-timeout:
			t.Fatalf("no %q log event within %s (its log follows at the end of the test)", msg, within)
		}
	}
}

// Log returns every event so far.
func (p *Process) Log() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.seen...)
}

// Find returns the first event named msg logged so far, counting from the
// start of the log. Unlike WaitFor it neither waits nor moves WaitFor's
// place, so a test can check an event after the fact (server_stopped once
// the process has exited, say) in any order.
func (p *Process) Find(msg string) (Event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.seen {
		if e.Msg() == msg {
			return e, true
		}
	}
	return nil, false
}

// Count returns how many events named msg were logged so far, counting
// from the start of the log.
func (p *Process) Count(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.seen {
		if e.Msg() == msg {
			n++
		}
	}
	return n
}

// text is the log so far, one JSON event a line, for a failed test's output.
func (p *Process) text() string {
	var b strings.Builder
	for _, e := range p.Log() {
		line, _ := json.Marshal(e) // it was JSON when it was read
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Signal sends sig to the process.
func (p *Process) Signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// WaitExit waits for the process to end and returns its exit code.
func (p *Process) WaitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("service still running after %s (its log follows at the end of the test)", within)
	}
	var ee *exec.ExitError
	if errors.As(p.exitErr, &ee) {
		return ee.ExitCode()
	}
	if p.exitErr != nil {
		t.Fatalf("wait: %v", p.exitErr)
	}
	return 0
}

// Stop sends sig and returns the exit code once the process has ended.
func (p *Process) Stop(t *testing.T, sig syscall.Signal, within time.Duration) int {
	t.Helper()
	p.Signal(t, sig)
	return p.WaitExit(t, within)
}

// Pid is the process id, for reading its /proc entries.
func (p *Process) Pid() int { return p.cmd.Process.Pid }
