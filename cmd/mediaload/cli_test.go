package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/media-service/media-service/internal/load"
)

func TestRunRejectsBadCommandLines(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no scenario", nil, "want a scenario"},
		{"unknown scenario", []string{"stampede"}, "unknown scenario"},
		{"zero subscribers", []string{"fanout", "-subscribers", "0"}, "-subscribers"},
		{"meeting without rooms", []string{"meeting"}, "-rooms"},
		{"secret without key", []string{"fanout", "-api-key", "", "-api-secret", "s"}, "-api-key"},
		{"bad url", []string{"fanout", "-url", "ftp://x"}, "-url"},
		{"tiny video packets", []string{"fanout", "-video-packet", "10"}, "-video-packet"},
		{"stray argument", []string{"floor", "extra"}, "unexpected arguments"},
		{"url and urls", []string{"fanout", "-url", "http://a:1", "-urls", "http://b:1"}, "-url and -urls exclude"},
		{"ops-url with urls", []string{"fanout", "-urls", "http://a:1", "-ops-url", "http://a:9"}, "-ops-urls"},
		{"ops-urls without urls", []string{"fanout", "-ops-urls", "http://a:9"}, "-ops-urls goes with -urls"},
		{"bad url in urls", []string{"fanout", "-urls", "http://a:1,ftp://b"}, "-urls"},
		{"empty urls", []string{"fanout", "-urls", " , "}, "-urls"},
		{"bad ops url", []string{"fanout", "-ops-url", "a:9"}, "-ops-url"},
		{"bad placement", []string{"fanout", "-urls", "http://a:1", "-placement", "nearest"}, "-placement"},
		{"fleet without spawn", []string{"fanout", "-spawn-fleet", "2"}, "-spawn-fleet needs -spawn"},
		{"huge fleet", []string{"fanout", "-spawn", "x", "-spawn-fleet", "99"}, "-spawn-fleet must be"},
		{"drain without fleet", []string{"fanout", "-drain-after", "2s"}, "-drain-after needs -spawn-fleet 2"},
		{"drain of a fleet of one", []string{"fanout", "-spawn", "x", "-spawn-fleet", "1", "-drain-after", "2s"}, "-drain-after needs"},
		{"drain in churn", []string{"churn", "-spawn", "x", "-spawn-fleet", "2", "-drain-after", "2s"}, "fanout and meeting"},
		{"drain after the window", []string{"fanout", "-spawn", "x", "-spawn-fleet", "2", "-drain-after", "30s", "-duration", "20s"}, "inside -duration"},
		{"negative drain", []string{"fanout", "-drain-after", "-1s"}, "-drain-after must not be negative"},
		{"capacity of an unknown shape", []string{"capacity", "-shapes", "fanout,meeting-7"}, "unknown shape"},
		{"capacity ceiling below a room", []string{"capacity", "-shapes", "meeting-10", "-start", "2", "-max", "8"}, "meeting-10 needs -max"},
		{"capacity start above the ceiling", []string{"capacity", "-start", "20", "-max", "8"}, "-start"},
		{"capacity without a latency bound", []string{"capacity", "-max-p99", "0s"}, "-max-p99"},
		{"gomaxprocs without spawn", []string{"capacity", "-gomaxprocs", "1"}, "-gomaxprocs"},
		{"beside without spawn", []string{"fanout", "-beside", "/bin/other"}, "-beside needs -spawn"},
		{"beside in churn", []string{"churn", "-spawn", "x", "-beside", "/bin/other"}, "fanout and meeting"},
		{"beside-relay without beside", []string{"fanout", "-spawn", "x", "-beside-relay"}, "-beside: no binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(context.Background(), tt.args, nil, &bytes.Buffer{}, &stderr)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v; want a usage error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestParseFlagsTargets(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		wantURLs    []string
		wantOpsURLs []string
	}{
		{"defaults", nil, []string{"http://127.0.0.1:8080"}, []string{"http://127.0.0.1:9091"}},
		{"one instance without metrics", []string{"-url", "http://h:1", "-ops-url", ""}, []string{"http://h:1"}, nil},
		{"several instances", []string{"-urls", "http://a:1, http://b:2,", "-ops-urls", "http://a:9"},
			[]string{"http://a:1", "http://b:2"}, []string{"http://a:9"}},
		{"several instances without metrics", []string{"-urls", "http://a:1,http://b:2"}, []string{"http://a:1", "http://b:2"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := parseFlags("fanout", tt.args, &bytes.Buffer{})
			if err != nil {
				t.Fatalf("parseFlags(fanout %q) = %v", tt.args, err)
			}
			if !slices.Equal(cl.cfg.URLs, tt.wantURLs) || !slices.Equal(cl.cfg.OpsURLs, tt.wantOpsURLs) {
				t.Errorf("parseFlags(fanout %q) URLs %q, OpsURLs %q; want %q, %q", tt.args, cl.cfg.URLs, cl.cfg.OpsURLs, tt.wantURLs, tt.wantOpsURLs)
			}
		})
	}
}

// TestParseFlagsFleet: -spawn-fleet and -drain-after reach the run's
// configuration.
func TestParseFlagsFleet(t *testing.T) {
	args := []string{"-spawn", "/tmp/ms", "-spawn-fleet", "3", "-drain-after", "5s", "-duration", "20s"}
	cl, err := parseFlags("meeting", append(args, "-rooms", "6"), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseFlags(meeting %q) = %v", args, err)
	}
	if c := cl.cfg; c.Spawn != "/tmp/ms" || c.SpawnFleet != 3 || c.DrainAfter != 5*time.Second {
		t.Errorf("parseFlags(meeting %q): spawn %q, fleet %d, drain after %s; want /tmp/ms, 3, 5s", args, c.Spawn, c.SpawnFleet, c.DrainAfter)
	}
}

// TestParseFlagsCapacity: the capacity scenario's flags reach the run,
// with its own defaults (12 s steps, no floor) where none are given.
func TestParseFlagsCapacity(t *testing.T) {
	args := []string{"-spawn", "/tmp/ms", "-gomaxprocs", "2", "-shapes", "meeting-5, fanout", "-start", "4", "-max", "64", "-max-p99", "20ms"}
	cl, err := parseFlags("capacity", args, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseFlags(capacity %q) = %v", args, err)
	}
	c := cl.cfg
	if c.GOMAXPROCS != 2 || !slices.Equal(c.Shapes, []string{"meeting-5", "fanout"}) || c.CapacityStart != 4 || c.CapacityMax != 64 || c.CapacityP99 != 20*time.Millisecond {
		t.Errorf("parseFlags(capacity %q) = gomaxprocs %d, shapes %q, start %d, max %d, p99 %s; want 2, [meeting-5 fanout], 4, 64, 20ms",
			args, c.GOMAXPROCS, c.Shapes, c.CapacityStart, c.CapacityMax, c.CapacityP99)
	}
	if c.Timing.Window != 12*time.Second || c.Floor {
		t.Errorf("parseFlags(capacity %q) = window %s, floor %v; want 12s, no floor", args, c.Timing.Window, c.Floor)
	}
	cl, err = parseFlags("capacity", []string{"-duration", "15s"}, &bytes.Buffer{})
	if err != nil || cl.cfg.Timing.Window != 15*time.Second || len(cl.cfg.Shapes) != 3 {
		t.Errorf("parseFlags(capacity -duration 15s) = window %s, shapes %q, %v; want 15s and all three shapes", cl.cfg.Timing.Window, cl.cfg.Shapes, err)
	}
}

func TestScenarioFirst(t *testing.T) {
	tests := []struct {
		args     []string
		wantName string
		wantRest []string
		wantOK   bool
	}{
		{[]string{"fanout", "-subscribers", "5"}, "fanout", []string{"-subscribers", "5"}, true},
		{[]string{"-spawn", "/tmp/ms", "fanout", "-subscribers", "5"}, "fanout", []string{"-spawn", "/tmp/ms", "-subscribers", "5"}, true},
		{[]string{"floor-relay"}, "floor-relay", []string{}, true},
		{[]string{"stampede", "-x"}, "stampede", []string{"-x"}, true},
		{[]string{"-spawn", "/tmp/ms"}, "", nil, false},
		{nil, "", nil, false},
	}
	for _, tt := range tests {
		name, rest, ok := scenarioFirst(tt.args)
		if name != tt.wantName || ok != tt.wantOK || strings.Join(rest, " ") != strings.Join(tt.wantRest, " ") {
			t.Errorf("scenarioFirst(%q) = %q, %q, %v; want %q, %q, %v", tt.args, name, rest, ok, tt.wantName, tt.wantRest, tt.wantOK)
		}
	}
}

func TestRunHelpIsNotAFailure(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"fanout", "-h"}, nil, &bytes.Buffer{}, &stderr)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "-subscribers") {
		t.Errorf("run(fanout -h) = %v with usage %q; want flag.ErrHelp and the flag list", err, stderr.String())
	}
}

// TestFailedJoinsFailTheRun: with nothing listening at -url, every join
// fails, and run reports the failure (non-zero exit) after writing the
// report.
func TestFailedJoinsFailTheRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port nothing listens on
	args := []string{"fanout", "-url", "http://" + addr, "-ops-url", "", "-subscribers", "2",
		"-floor=false", "-join-timeout", "2s", "-quiet", "-json"}
	var stdout bytes.Buffer
	err = run(context.Background(), args, nil, &stdout, &bytes.Buffer{})
	if !errors.Is(err, errFailed) {
		t.Fatalf("run(%q) = %v; want errFailed", args, err)
	}
	var rep load.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	if rep.OK || rep.Joins == nil || rep.Joins.Failed != 3 || len(rep.Failures) == 0 {
		t.Errorf("report ok=%v joins=%+v failures=%q; want not ok, 3 failed joins, a failure", rep.OK, rep.Joins, rep.Failures)
	}
}

// TestFloorScenarioJSON runs the floor scenario through the command line,
// with the test binary as the relay child (see TestMain), and reads its
// JSON report: by default the floor batches its sends, as the server does.
func TestFloorScenarioJSON(t *testing.T) {
	args := []string{"floor", "-rooms", "2", "-participants", "3", "-video-kbps", "440",
		"-warmup", "200ms", "-duration", "1s", "-json", "-quiet"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout bytes.Buffer
	if err := run(ctx, args, nil, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("run(%q) = %v", args, err)
	}
	var got load.Report
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	// 2 rooms x 3 publishers x 2 receivers each x (50 video + 50 audio)/s.
	if got.Shape.ExpectedPerSec != 1200 {
		t.Errorf("expected_forwarded_per_second = %g; want 1200", got.Shape.ExpectedPerSec)
	}
	f := got.Floor
	if !got.OK || f == nil || f.Lost != 0 || f.Forwarded == 0 || f.CPUMicrosPerPkt <= 0 || f.LatencyP99 <= 0 {
		t.Errorf("floor report ok=%v %+v; want ok, no loss, packets, CPU and latency", got.OK, f)
	}
	if got.FloorSends != load.FloorSendsBatched {
		t.Errorf("floor_sends = %q; want %q by default", got.FloorSends, load.FloorSendsBatched)
	}
	if got.Server != nil {
		t.Errorf("floor scenario has a server section %+v; want none", got.Server)
	}
}
