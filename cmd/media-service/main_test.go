package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/media-service/media-service/internal/servicetest"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

// binary is the media-service executable built once for these tests, so
// they exercise exactly what an operator runs: flags, environment, signals
// and exit codes.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "media-service-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "media-service")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build media-service: %v\n%s", err, out)
		os.Exit(1)
	}
	before := goleak.IgnoreCurrent()
	code := m.Run()
	os.RemoveAll(dir)
	// The tests' own clients, log readers and HTTP connections must all
	// have ended with them.
	if err := goleak.Find(before); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goroutines outlived the tests:", err)
		code = 1
	}
	os.Exit(code)
}

// service is a running media-service under test.
type service = servicetest.Process

// startService runs the binary with the process environment, the loopback
// listeners and env, and waits for its server_started event.
func startService(t *testing.T, env ...string) *service {
	t.Helper()
	return startBinary(t, binary, env...)
}

// startBinary is startService for another build of the service.
func startBinary(t *testing.T, bin string, env ...string) *service {
	t.Helper()
	return servicetest.Start(t, bin, append(append(os.Environ(), servicetest.LoopbackEnv...), env...))
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func TestServeAndDrainOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			s := startService(t)
			if code, body := get(t, "http://"+s.HTTPAddr+"/health"); code != 200 || body != `{"service":"media-service","status":"ok"}`+"\n" {
				t.Errorf("GET /health = %d %q; want 200 with the exact health body", code, body)
			}
			if code, _ := get(t, "http://"+s.HTTPAddr+"/ready"); code != 200 {
				t.Errorf("GET /ready = %d; want 200 while serving", code)
			}
			_, metrics := get(t, "http://"+s.OpsAddr+"/metrics")
			for _, name := range []string{"media_goroutine_count", "media_goroutine_count_max", "media_potential_goroutine_leak", "process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines", "go_memstats_heap_alloc_bytes"} {
				if !regexp.MustCompile(`(?m)^` + name + `[ {]`).MatchString(metrics) {
					t.Errorf("GET /metrics lacks a %s series", name)
				}
			}
			if code, dump := get(t, "http://"+s.OpsAddr+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.HasPrefix(dump, "goroutine profile: total") {
				t.Errorf("GET /debug/pprof/goroutine?debug=1 = %d %.40q; want a goroutine dump", code, dump)
			}

			sent := time.Now()
			s.Signal(t, sig)
			down := s.WaitFor(t, "shutting_down_server", 5*time.Second)
			if down["reason"] != "signal" || down["signal"] != sig.String() && down["signal"] != signalName(sig) {
				t.Errorf("shutting_down_server = %v; want reason signal and signal %s", down, signalName(sig))
			}
			s.WaitFor(t, "closing_all_sessions", 5*time.Second)
			stopped := s.WaitFor(t, "server_stopped", 5*time.Second)
			if got := stopped["closed_sessions"]; got != 0.0 {
				t.Errorf("server_stopped closed_sessions = %v; want 0", got)
			}
			if code := s.WaitExit(t, 5*time.Second); code != 0 {
				t.Errorf("exit code = %d; want 0", code)
			}
			// With nothing connected the process must be gone within 2 s.
			if took := time.Since(sent); took > 2*time.Second {
				t.Errorf("exit took %s after %s; want under 2s with no sessions", took, signalName(sig))
			}
		})
	}
}

// TestConfigErrorsStopTheStart: a bad value stops the start with exit 1
// and one line on stderr that names the variable, before anything is
// logged or bound, whichever package's configuration it belongs to; a
// taken port fails with its address.
func TestConfigErrorsStopTheStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := fmt.Sprint(taken.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		name  string
		env   []string
		want  string // the message must name the culprit
		bound bool   // the error comes from binding, after the start-up log
	}{
		{"bad duration", []string{"MEDIA_DRAIN_TIMEOUT=abc"}, `media-service: MEDIA_DRAIN_TIMEOUT: "abc" is not a duration`, false},
		{"negative drain", []string{"MEDIA_DRAIN_TIMEOUT=-1s"}, "media-service: edge: MEDIA_DRAIN_TIMEOUT must be positive, got -1s", false},
		{"bad port", []string{"PORT=99999"}, "media-service: edge: PORT must be a port from 0 to 65535, got 99999", false},
		{"port not a number", []string{"PORT=notaport"}, `media-service: PORT: "notaport" is not a port number (0-65535)`, false},
		{"ops port not a number", []string{"MEDIA_OPS_PORT=ops"}, `media-service: MEDIA_OPS_PORT: "ops" is not a port number`, false},
		{"two bad values", []string{"MEDIA_OPS_PORT=ops", "MEDIA_MAX_ROOMS=many"}, `MEDIA_OPS_PORT: "ops" is not a port number (0-65535); MEDIA_MAX_ROOMS: "many" is not a whole number`, false},
		{"short secret", []string{"MEDIA_API_KEY=k", "MEDIA_API_SECRET=short"}, "media-service: edge: MEDIA_API_SECRET must be at least 32 bytes, got 5", false},
		{"bad leak factor", []string{"MEDIA_LEAK_FACTOR=0.5"}, "media-service: telemetry: MEDIA_LEAK_FACTOR must be above 1", false},
		{"bad media value", []string{"MEDIA_NACK_BUFFER=500"}, "media-service: sfu: MEDIA_NACK_BUFFER must be a power of two", false},
		// TURN is configured last and built after the media engine binds:
		// its values too are checked before that.
		{"bad turn value", []string{"MEDIA_TURN_MAX_CONNS=0"}, "media-service: turn: MEDIA_TURN_MAX_CONNS must be at least 1, got 0", false},
		{"turn certificate missing", []string{"MEDIA_TURN_TLS_CERT=/nonexistent.pem", "MEDIA_TURN_TLS_KEY=/nonexistent.key"}, "media-service: turn: MEDIA_TURN_TLS_CERT and MEDIA_TURN_TLS_KEY do not load", false},
		{"http port taken", []string{"PORT=" + takenPort}, "127.0.0.1:" + takenPort, true},
		{"ops port taken", []string{"MEDIA_OPS_PORT=" + takenPort}, "127.0.0.1:" + takenPort, true},
		{"bad redis url", []string{"MEDIA_REDIS_URL=http://127.0.0.1:6379", "MEDIA_PUBLIC_URL=http://127.0.0.1:8080"}, "MEDIA_REDIS_URL", false},
		{"redis without public url", []string{"MEDIA_REDIS_URL=redis://127.0.0.1:6379"}, "MEDIA_PUBLIC_URL", false},
		{"bad public url", []string{"MEDIA_REDIS_URL=redis://127.0.0.1:6379", "MEDIA_PUBLIC_URL=media.example.com"}, "MEDIA_PUBLIC_URL", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary)
			cmd.Env = append(append(os.Environ(), servicetest.LoopbackEnv...), tt.env...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("media-service with %v: err = %v; want exit 1\n%s%s", tt.env, err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("media-service with %v said %q; want it to say %q", tt.env, stderr.String(), tt.want)
			}
			if tt.bound {
				return
			}
			if lines := strings.Count(stderr.String(), "\n"); lines != 1 {
				t.Errorf("media-service with %v wrote %d lines on stderr; want 1", tt.env, lines)
			}
			if stdout.Len() != 0 {
				t.Errorf("media-service with %v logged before the error (so it may have bound a port):\n%s", tt.env, stdout.String())
			}
		})
	}
}

// TestCommandLine: a request for help prints the usage and exits 0, a
// flag or command it does not know prints the usage and exits 2, and
// neither starts an instance; token mints only with a key pair an
// instance would accept.
func TestCommandLine(t *testing.T) {
	const secret = "prod-secret-0123456789abcdef0123456789"
	tests := []struct {
		args     []string
		env      []string
		code     int
		stdout   string // what stdout must hold
		stderr   string // what stderr must hold; "" for nothing at all
		noStdout bool
	}{
		{[]string{"-h"}, nil, 0, "media-service token -room R", "", false},
		{[]string{"-help"}, nil, 0, `README.md, section "Configuration"`, "", false},
		{[]string{"--help"}, nil, 0, "media-service [serve]", "", false},
		{[]string{"help"}, nil, 0, "media-service [serve]", "", false},
		{[]string{"serve", "-h"}, nil, 0, "media-service [serve]", "", false},
		{[]string{"-port=80"}, nil, 2, "", "flag provided but not defined: -port", true},
		{[]string{"serve", "-v"}, nil, 2, "", "Usage:", true},
		{[]string{"serve", "now"}, nil, 2, "", `serve takes no arguments, got ["now"]`, true},
		{[]string{"start"}, nil, 2, "", `unknown command "start"`, true},
		{[]string{"token", "-h"}, nil, 0, "-identity", "", false},
		{[]string{"token", "-bogus"}, nil, 2, "", "flag provided but not defined: -bogus", true},
		{[]string{"token", "-room", "demo"}, nil, 2, "", "-room and -identity are required", true},
		{[]string{"token", "-room", "demo", "-identity", "alice"}, []string{"MEDIA_API_KEY=k", "MEDIA_API_SECRET=short"}, 1, "", "MEDIA_API_SECRET must be at least 32 bytes, got 5", true},
		{[]string{"token", "-room", "demo", "-identity", "alice"}, []string{"MEDIA_API_SECRET=" + secret}, 1, "", "MEDIA_API_KEY is required when MEDIA_API_SECRET is set", true},
		{[]string{"token", "-room", "demo", "-identity", "alice"}, []string{"MEDIA_API_KEY=k", "MEDIA_API_SECRET=" + secret}, 0, "eyJ", "", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, tt.args...)
			cmd.Env = append(append(os.Environ(), servicetest.LoopbackEnv...), "MEDIA_API_KEY=", "MEDIA_API_SECRET=")
			cmd.Env = append(cmd.Env, tt.env...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if ctx.Err() != nil {
				t.Fatalf("media-service %v still ran after a minute (an instance started?)\n%s", tt.args, stdout.String())
			}
			if code != tt.code {
				t.Errorf("media-service %v exit code = %d; want %d\nstdout: %s\nstderr: %s", tt.args, code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) || tt.noStdout && stdout.Len() > 0 {
				t.Errorf("media-service %v stdout = %q; want it to hold %q", tt.args, stdout.String(), tt.stdout)
			}
			if tt.stderr == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("media-service %v stderr = %q; want %q", tt.args, stderr.String(), tt.stderr)
			}
			if strings.Contains(stdout.String()+stderr.String(), "server_started") || strings.Contains(stderr.String(), "help requested") {
				t.Errorf("media-service %v printed %q %q; want no server and no flag noise", tt.args, stdout.String(), stderr.String())
			}
		})
	}
}

// devToken fetches an access token from the dev token endpoint.
func devToken(t *testing.T, s *service, room, identity string) string {
	t.Helper()
	code, body := get(t, fmt.Sprintf("http://%s/v1/dev/token?room=%s&identity=%s", s.HTTPAddr, room, identity))
	if code != 200 {
		t.Fatalf("GET /v1/dev/token = %d %s", code, body)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.Token == "" {
		t.Fatalf("dev token body %q: %v", body, err)
	}
	return tok.Token
}

// joinDev joins room as identity with a dev token and reads the joined
// message.
func joinDev(t *testing.T, s *service, room, identity string) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+s.HTTPAddr+"/v1/rtc?access_token="+devToken(t, s, room, identity), nil)
	if err != nil {
		t.Fatalf("dial /v1/rtc: %v (%v)", err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	if msg := readType(t, ws, "joined"); msg == nil {
		t.Fatal("no joined message")
	}
	return ws
}

// readType reads messages until one of type typ arrives.
func readType(t *testing.T, ws *websocket.Conn, typ string) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("reading for %q: %v", typ, err)
		}
		if m["type"] == typ {
			return m
		}
	}
}

func TestDrainWaitsForSessions(t *testing.T) {
	s := startService(t, "MEDIA_DRAIN_TIMEOUT=20s")
	ws := joinDev(t, s, "drain", "alice")
	late := devToken(t, s, "drain", "carol")

	s.Signal(t, syscall.SIGTERM)
	s.WaitFor(t, "shutting_down_server", 5*time.Second)
	draining := readType(t, ws, "draining")
	deadline, err := time.Parse(time.RFC3339, fmt.Sprint(draining["deadline"]))
	if err != nil || time.Until(deadline) < 10*time.Second {
		t.Errorf("draining deadline = %v (%v); want about 20s ahead", draining["deadline"], err)
	}
	if code, body := get(t, "http://"+s.HTTPAddr+"/ready"); code != http.StatusServiceUnavailable || !json.Valid([]byte(body)) {
		t.Errorf("GET /ready while draining = %d %q; want 503 with a JSON body", code, body)
	}
	resp, err := http.Get("http://" + s.HTTPAddr + "/v1/rtc?access_token=" + late)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("join while draining = %d Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	if err := ws.WriteJSON(map[string]string{"type": "leave"}); err != nil {
		t.Fatal(err)
	}
	s.WaitFor(t, "closing_all_sessions", 10*time.Second)
	stopped := s.WaitFor(t, "server_stopped", 5*time.Second)
	if got := stopped["closed_sessions"]; got != 1.0 {
		t.Errorf("server_stopped closed_sessions = %v; want 1", got)
	}
	if code := s.WaitExit(t, 5*time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
}

func TestSecondSignalSkipsTheWait(t *testing.T) {
	s := startService(t, "MEDIA_DRAIN_TIMEOUT=60s")
	ws := joinDev(t, s, "second", "bob")

	s.Signal(t, syscall.SIGTERM)
	s.WaitFor(t, "shutting_down_server", 5*time.Second)
	readType(t, ws, "draining")
	s.Signal(t, syscall.SIGTERM)
	s.WaitFor(t, "closing_all_sessions", 5*time.Second)
	stopped := s.WaitFor(t, "server_stopped", 10*time.Second)
	if got := stopped["closed_sessions"]; got != 1.0 {
		t.Errorf("server_stopped closed_sessions = %v; want 1", got)
	}
	if code := s.WaitExit(t, 10*time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
	leave := readType(t, ws, "leave")
	if leave["reason"] != "server_shutdown" {
		t.Errorf("leave = %v; want reason server_shutdown", leave)
	}
}

// TestGCTarget: the instance collects at 50 % heap growth unless GOGC
// says otherwise, as the Go runtime itself reports it on /metrics.
func TestGCTarget(t *testing.T) {
	for _, tc := range []struct{ gogc, want string }{
		{"", "50"}, // unset: empty is unset to the runtime too
		{"100", "100"},
		{"80", "80"},
	} {
		t.Run("GOGC="+tc.gogc, func(t *testing.T) {
			s := startService(t, "GOGC="+tc.gogc)
			_, metrics := get(t, "http://"+s.OpsAddr+"/metrics")
			m := regexp.MustCompile(`(?m)^go_gc_gogc_percent(?:\{[^}]*\})? (\S+)$`).FindStringSubmatch(metrics)
			if m == nil {
				t.Fatal("GET /metrics lacks go_gc_gogc_percent")
			}
			if m[1] != tc.want {
				t.Errorf("go_gc_gogc_percent with GOGC=%q = %s; want %s", tc.gogc, m[1], tc.want)
			}
			if ev, ok := s.Find("gc_target"); !ok || ev["percent"] != tc.want {
				t.Errorf("gc_target event = %v; want percent %s", ev, tc.want)
			}
		})
	}
}
