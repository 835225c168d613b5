package load

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// lightConfig is a short fanout to subs receivers, all light but full.
func lightConfig(t *testing.T, bin string, subs, full int) Config {
	t.Helper()
	cfg := smokeConfig(t, "fanout", bin)
	cfg.Subscribers, cfg.Light, cfg.Media.VideoKbps, cfg.MaxLoss, cfg.Floor = subs, full, 880, 0, false
	cfg.Timing.Warmup, cfg.Timing.Window = time.Second, 3*time.Second
	return cfg
}

// runLight runs cfg. A failed run in which the load generator itself fell
// behind (it skipped sends: the race detector's generator on a machine
// busy with other tests) measured the machine, not the instance, and is
// run again, up to 3 times in all.
func runLight(t *testing.T, cfg Config) *Report {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		rep, err := Run(ctx, cfg, nil)
		cancel()
		if err != nil {
			t.Fatalf("Run(%s -light %d) = %v", cfg.Scenario, cfg.Light, err)
		}
		if rep.OK || rep.Server == nil || rep.Server.SkippedSends == 0 || attempt == 3 {
			return rep
		}
		t.Logf("%s -light %d, run %d: %q with the load generator %d sends behind; running again", cfg.Scenario, cfg.Light, attempt, rep.Failures, rep.Server.SkippedSends)
	}
}

// TestLightFanout runs a fanout whose receivers are light but one, then
// all light: every packet arrives and is counted as for full receivers,
// the light ones read it at their sockets, and the instance estimates
// their bandwidth from their feedback and pauses nothing. Then meetings
// with light receivers.
func TestLightFanout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := buildServer(t)
	for _, full := range []int{1, 0} {
		rep := runLight(t, lightConfig(t, bin, 4, full))
		s, c := rep.Server, rep.Receivers
		if !rep.OK || s == nil || s.Forwarded == 0 || s.Lost != 0 || s.Forwarded != s.Expected || s.Unexpected != 0 {
			t.Fatalf("-light %d: ok %v %q, forwarding %+v; want every packet once", full, rep.OK, rep.Failures, s)
		}
		if c == nil || c.Light != 4-full || c.Full != full || c.AtSocket == 0 {
			t.Errorf("-light %d: receivers = %+v; want %d light reading at the socket, %d full", full, c, 4-full, full)
		}
		if (s.LatencyP50 > 0) != (full > 0) {
			t.Errorf("-light %d: latency p50 = %.3f ms; want one only from full receivers", full, s.LatencyP50)
		}
		// With no full receiver the estimates are the light ones' alone:
		// the publisher's subscriber connection receives nothing.
		if r := rep.Resources; r == nil || r.Loaded.Estimates <= 0 || r.Loaded.Paused != 0 {
			t.Errorf("-light %d: server resources = %+v; want bandwidth estimates, no paused subscription", full, r)
		}
	}
	// Meetings: light receivers publish too, and read several streams.
	cfg := lightConfig(t, bin, 1, 1)
	cfg.Scenario, cfg.Rooms, cfg.Participants = "meeting", 2, 3
	rep := runLight(t, cfg)
	if s, c := rep.Server, rep.Receivers; !rep.OK || s == nil || s.Lost != 0 || s.Forwarded != s.Expected || c == nil || c.Light != 5 || c.AtSocket == 0 {
		t.Errorf("meeting -light 1: ok %v %q, forwarding %+v, receivers %+v; want every packet, 5 light reading at the socket", rep.OK, rep.Failures, s, c)
	}
}

// TestLightCountsLoss drops every 10th RTP packet a light receiver's
// sockets read, before the light receiver sees it: those are lost, and
// the run says so.
func TestLightCountsLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	base, err := stdnet.NewNet()
	if err != nil {
		t.Fatalf("stdnet.NewNet() = %v", err)
	}
	cfg := lightConfig(t, buildServer(t), 2, 0)
	cfg.lightNet = &dropNet{Net: base, every: 10}
	rep := runLight(t, cfg)
	s := rep.Server
	if s == nil || s.Expected == 0 {
		t.Fatalf("forwarding = %+v; want packets expected", s)
	}
	// Each of the 2 receivers misses a tenth of its packets; a few of the
	// first ones went through Pion, whose NACKs may have repaired some.
	if s.Lost < s.Expected/20 || rep.OK {
		t.Errorf("lost %d of %d, ok %v; want about a tenth lost and the run failed", s.Lost, s.Expected, rep.OK)
	}
}

// dropNet is the host's network whose UDP sockets drop every n-th RTP
// packet they read.
type dropNet struct {
	transport.Net
	every int
}

func (n *dropNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &dropConn{UDPConn: c, every: int64(n.every)}, nil
}

type dropConn struct {
	transport.UDPConn
	every int64
	rtp   atomic.Int64
}

func (c *dropConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(p)
		if err == nil {
			if _, ok := parseSRTPHeader(p[:n], 0); ok && c.rtp.Add(1)%c.every == 0 {
				continue
			}
		}
		return n, addr, err
	}
}

// TestSpawnPinned starts the real instance with -cpus 0: the process the
// run talks to (taskset execs it) may run on CPU 0 alone.
func TestSpawnPinned(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset (util-linux) is not installed")
	}
	bin := buildServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := spawn(ctx, bin, spawnEnv(4), "0", os.Stderr)
	if err != nil {
		t.Fatalf("spawn(%s, -cpus 0) = %v", bin, err)
	}
	defer s.stop()
	if allowed := cpusAllowed(t, s.cmd.Process.Pid); allowed != "0" {
		t.Errorf("instance's Cpus_allowed_list = %q; want \"0\"", allowed)
	}
}

// TestFloorRelayPinned starts the floor relay with the run's -cpus 0: it
// runs where the instance it is compared with runs.
func TestFloorRelayPinned(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset (util-linux) is not installed")
	}
	fo := testFloorOptions(t, true)
	fo.cpus = "0"
	p, err := startRelayProc(t.Context(), fo)
	if err != nil {
		t.Fatalf("startRelayProc(-cpus 0) = %v", err)
	}
	defer p.close()
	if allowed := cpusAllowed(t, p.cmd.Process.Pid); allowed != "0" {
		t.Errorf("floor relay's Cpus_allowed_list = %q; want \"0\"", allowed)
	}
}

// cpusAllowed is the CPU list process pid may run on.
func cpusAllowed(t *testing.T, pid int) string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read process %d's status: %v", pid, err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("process %d's status has no Cpus_allowed_list", pid)
	return ""
}

// TestServeCommandNeedsTaskset: -cpus without taskset on the PATH is a
// clear error, not an unpinned instance.
func TestServeCommandNeedsTaskset(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := serveCommand("/bin/ms", "1"); err == nil || !strings.Contains(err.Error(), "taskset") {
		t.Errorf("serveCommand(-cpus 1) without taskset = %v; want an error naming taskset", err)
	}
	if cmd, err := serveCommand("/bin/ms", ""); err != nil || cmd.Path != "/bin/ms" {
		t.Errorf("serveCommand(unpinned) = %v, %v; want /bin/ms serve", cmd, err)
	}
}
