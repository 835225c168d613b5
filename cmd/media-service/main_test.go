package main

import (
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

func TestConfigErrorsStopTheStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := fmt.Sprint(taken.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		name string
		env  []string
		want string // the message must name the culprit
	}{
		{"bad duration", []string{"MEDIA_DRAIN_TIMEOUT=abc"}, "MEDIA_DRAIN_TIMEOUT"},
		{"negative drain", []string{"MEDIA_DRAIN_TIMEOUT=-1s"}, "MEDIA_DRAIN_TIMEOUT"},
		{"bad port", []string{"PORT=99999"}, "PORT"},
		{"port not a number", []string{"MEDIA_OPS_PORT=ops"}, "MEDIA_OPS_PORT"},
		{"http port taken", []string{"PORT=" + takenPort}, "127.0.0.1:" + takenPort},
		{"ops port taken", []string{"MEDIA_OPS_PORT=" + takenPort}, "127.0.0.1:" + takenPort},
		{"short secret", []string{"MEDIA_API_KEY=k", "MEDIA_API_SECRET=short"}, "MEDIA_API_SECRET"},
		{"bad leak factor", []string{"MEDIA_LEAK_FACTOR=0.5"}, "MEDIA_LEAK_FACTOR"},
		{"bad redis url", []string{"MEDIA_REDIS_URL=http://127.0.0.1:6379", "MEDIA_PUBLIC_URL=http://127.0.0.1:8080"}, "MEDIA_REDIS_URL"},
		{"redis without public url", []string{"MEDIA_REDIS_URL=redis://127.0.0.1:6379"}, "MEDIA_PUBLIC_URL"},
		{"bad public url", []string{"MEDIA_REDIS_URL=redis://127.0.0.1:6379", "MEDIA_PUBLIC_URL=media.example.com"}, "MEDIA_PUBLIC_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary)
			cmd.Env = append(append(os.Environ(), servicetest.LoopbackEnv...), tt.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("media-service with %v: err = %v; want a non-zero exit\n%s", tt.env, err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("media-service with %v said %q; want it to name %q", tt.env, out, tt.want)
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
