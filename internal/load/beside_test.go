package load

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestRunBeside runs a light fanout against two instances of the built
// server at once: both get every packet, both report their CPU per
// forwarded packet, and the ratio is theirs.
func TestRunBeside(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	cfg := lightConfig(t, bin, 4, 1)
	cfg.Floor = true // the pair measures none
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := RunBeside(ctx, cfg, bin, nil)
	if err != nil {
		t.Fatalf("RunBeside() = %v", err)
	}
	for name, rep := range map[string]*Report{"this": r.This, "beside": r.Beside} {
		s := rep.Server
		if s == nil || s.Forwarded == 0 || s.Lost != 0 || s.CPUMicrosPerPkt <= 0 || rep.Floor != nil {
			t.Errorf("%s: ok %v %q, forwarding %+v, floor %+v; want every packet, a CPU figure, no floor", name, rep.OK, rep.Failures, s, rep.Floor)
		}
	}
	if t.Failed() {
		return
	}
	if want := r.Beside.Server.CPUMicrosPerPkt / r.This.Server.CPUMicrosPerPkt; !r.OK || r.CPURatio != want {
		t.Errorf("ok %v, ratio %v; want ok and %v", r.OK, r.CPURatio, want)
	}
	var text, js bytes.Buffer
	if err := r.Write(&text, false); err != nil || !strings.Contains(text.String(), "beside ÷ this, CPU per forwarded packet") {
		t.Errorf("Write(text) = %v, %q; want both tables and the ratio", err, text.String())
	}
	var back BesideReport
	if err := r.Write(&js, true); err != nil || json.Unmarshal(js.Bytes(), &back) != nil || back.CPURatio != r.CPURatio {
		t.Errorf("Write(JSON) = %v, ratio read back %v; want %v", err, back.CPURatio, r.CPURatio)
	}
}

// TestRunBesideRelay runs one build twice side by side, its subscribers
// direct in one instance and relay-only in the other (-beside-relay):
// both get every packet, only the one beside holds TURN allocations, and
// the report says which was relayed.
func TestRunBesideRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	cfg := lightConfig(t, bin, 2, 1)
	cfg.BesideRelay = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := RunBeside(ctx, cfg, bin, nil)
	if err != nil {
		t.Fatalf("RunBeside(-beside-relay) = %v", err)
	}
	for name, rep := range map[string]*Report{"this": r.This, "beside": r.Beside} {
		if s := rep.Server; !rep.OK || s == nil || s.Forwarded == 0 || s.Lost != 0 || s.Forwarded != s.Expected {
			t.Errorf("%s: ok %v %q, forwarding %+v; want every packet", name, rep.OK, rep.Failures, s)
		}
	}
	if t.Failed() {
		return
	}
	if a, b := r.This.Resources, r.Beside.Resources; a == nil || b == nil || a.Loaded.TURNAllocations != 0 || b.Loaded.TURNAllocations < 2 {
		t.Errorf("TURN allocations: this %+v, beside %+v; want none here, one per subscriber beside", a, b)
	}
	var text bytes.Buffer
	if err := r.Write(&text, false); err != nil || !r.BesideRelay || !strings.Contains(text.String(), "(relay-only subscribers)") {
		t.Errorf("Write(text) = %v, relay %v, %q; want the beside instance titled relay-only", err, r.BesideRelay, text.String())
	}
}

// TestRunBesideRefuses: a pair needs two spawned single instances and a
// forwarding scenario.
func TestRunBesideRefuses(t *testing.T) {
	base := DefaultConfig()
	base.SetScenario("fanout")
	base.Spawn = "/bin/ms"
	for _, tc := range []struct {
		name  string
		set   func(*Config)
		other string
		want  string
	}{
		{"no other binary", func(*Config) {}, "", "no binary"},
		{"no spawn", func(c *Config) { c.Spawn = "" }, "/bin/other", "-spawn"},
		{"a fleet", func(c *Config) { c.SpawnFleet = 2 }, "/bin/other", "-spawn-fleet"},
		{"churn", func(c *Config) { c.SetScenario("churn") }, "/bin/other", "fanout and meeting"},
		{"relay beside relay", func(c *Config) { c.BesideRelay, c.Relay = true, true }, "/bin/other", "-relay"},
	} {
		c := base
		tc.set(&c)
		if _, err := RunBeside(context.Background(), c, tc.other, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: RunBeside() = %v; want an error naming %q", tc.name, err, tc.want)
		}
	}
}
