// Package redistest runs a real redis-server for tests: Debian's binary on
// a free loopback port, in a temporary directory, with persistence off.
// Tests of the fleet directory run against it (never a mock of Redis), and
// stop and restart it on the same port to test an outage.
//
// Without redis-server on PATH a test is skipped with a note, except under
// CI=true, where it fails: CI must install Debian's redis-server package.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds the wait for a started server to answer PING. It is
// generous: the test machine may be a loaded 2-core CI runner.
const startTimeout = 20 * time.Second

// Server is one redis-server process for one test. Its methods are called
// from the test's goroutine only.
type Server struct {
	// Addr is the server's host:port on 127.0.0.1; it stays the same across
	// Stop and Restart.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed when cmd has been waited for
}

// Start runs a redis-server on a free loopback port and waits until it
// answers PING. The server is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Require(t), dir: t.TempDir()}
	t.Cleanup(s.Stop)
	// A free port can be taken by another process between our probe and
	// the server's bind: try a few.
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if last = s.start(); last == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", last)
	return nil
}

// Require returns the path of redis-server, for a test that starts it
// some other way (mediaload's -spawn-fleet starts its own). Without it on
// PATH the test is skipped, or under CI=true fails.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found on PATH with CI=true: install Debian's redis-server package (apt-get install -y redis-server)")
		}
		t.Skipf("redis-server not found on PATH: install Debian's redis-server package to run this test")
	}
	return bin
}

// URL is the server's address as a redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Stop stops the server (SIGKILL: nothing is persisted anyway) and waits
// for the process to end. Connections to Addr are then refused. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts a stopped server again on the same port, empty (as a
// restarted Redis without persistence is), and waits until it answers
// PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	// The port was ours a moment ago; another process taking it in
	// between is possible but rare: retry the bind for a while.
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: restart on %s: %v", s.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs redis-server on s.Addr and waits for its PING answer.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin,
		"--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "yes",
		"--logfile", "")
	cmd.Dir = s.dir
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited at start: %s", s.Addr, out.String())
		default:
		}
		if Ping(s.Addr) == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %s", s.Addr, startTimeout, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ping sends one PING to addr in RESP and reads the +PONG: a test checks
// with it whether a server is up without a Redis client.
func Ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// freePort asks the kernel for a free TCP port on loopback.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
