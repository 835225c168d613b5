package servicetest_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/servicetest"
	"go.uber.org/goleak"
)

// With fakeJoinsEnv set, the test binary, run again by Start, acts as a
// service that logs server_started, a session_joined event for each letter
// of fakeJoinsEnv, then as many session_left events as fakeLeftEnv says,
// and exits 0. It stands in for media-service so that the runner's own
// bookkeeping can be checked exactly.
const (
	fakeJoinsEnv = "SERVICETEST_FAKE_JOINS"
	fakeLeftEnv  = "SERVICETEST_FAKE_LEFT"
)

func TestMain(m *testing.M) {
	if joins, ok := os.LookupEnv(fakeJoinsEnv); ok {
		fakeService(joins, os.Getenv(fakeLeftEnv))
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// fakeService writes the fake's log to stdout, as the service does.
func fakeService(joins, left string) {
	fmt.Println(`{"msg":"server_started","http_addr":"127.0.0.1:1","ops_addr":"127.0.0.1:2"}`)
	for _, id := range joins {
		fmt.Printf(`{"msg":"session_joined","identity":%q}`+"\n", string(id))
	}
	n, _ := strconv.Atoi(left)
	for i := range n {
		fmt.Printf(`{"msg":"session_left","n":%d,"padding":"%0100d"}`+"\n", i, 0)
	}
}

// startFake runs the fake with joins (one identity a letter) and left
// session_left events.
func startFake(t *testing.T, joins string, left int) *servicetest.Process {
	t.Helper()
	return servicetest.Start(t, os.Args[0], []string{fakeJoinsEnv + "=" + joins, fakeLeftEnv + "=" + strconv.Itoa(left)})
}

func TestStartReadsTheAddresses(t *testing.T) {
	p := startFake(t, "", 0)
	if p.HTTPAddr != "127.0.0.1:1" || p.OpsAddr != "127.0.0.1:2" {
		t.Errorf("Start: HTTPAddr %q, OpsAddr %q; want 127.0.0.1:1 and 127.0.0.1:2 from server_started", p.HTTPAddr, p.OpsAddr)
	}
	if code := p.WaitExit(t, 10*time.Second); code != 0 {
		t.Errorf("WaitExit = %d; want 0", code)
	}
}

// Find and Count look at the whole log from its start, whatever WaitFor has
// consumed, and leave WaitFor's place where it was.
func TestFindAndCountSeeTheWholeLog(t *testing.T) {
	p := startFake(t, "abc", 1)
	if code := p.WaitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("WaitExit = %d; want 0", code)
	}
	if e := p.WaitFor(t, "session_joined", time.Second); e["identity"] != "a" {
		t.Fatalf("WaitFor(session_joined) = %v; want identity a", e)
	}
	p.WaitFor(t, "session_joined", time.Second) // b: WaitFor's place is now past a and b

	tests := []struct {
		msg      string
		identity any // of the event Find returns
		found    bool
		count    int
	}{
		{"session_joined", "a", true, 3},
		{"server_started", nil, true, 1},
		{"session_left", nil, true, 1},
		{"no_such_event", nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			e, ok := p.Find(tt.msg)
			if ok != tt.found || ok && (e.Msg() != tt.msg || e["identity"] != tt.identity) {
				t.Errorf("Find(%q) = %v, %v; want %v with identity %v", tt.msg, e, ok, tt.found, tt.identity)
			}
			if got := p.Count(tt.msg); got != tt.count {
				t.Errorf("Count(%q) = %d; want %d", tt.msg, got, tt.count)
			}
		})
	}
	if e := p.WaitFor(t, "session_joined", time.Second); e["identity"] != "c" {
		t.Errorf("WaitFor(session_joined) after Find = %v; want identity c, the next one", e)
	}
}

// A service that logs far more than a pipe holds, with no test waiting for
// any of it, still runs to its end: the reader never makes it wait.
func TestReaderNeverBlocksTheService(t *testing.T) {
	const left = 20000 // about 2.5 MB, some forty times a pipe's buffer
	p := startFake(t, "", left)
	if code := p.WaitExit(t, 60*time.Second); code != 0 {
		t.Fatalf("WaitExit = %d; want 0", code)
	}
	if got := p.Count("session_left"); got != left {
		t.Errorf("Count(session_left) = %d; want %d, every event kept", got, left)
	}
}
