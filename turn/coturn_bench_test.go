//go:build linux

package turn

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// The load of BenchmarkRelayVsCoturn: coturn's own test client with the
// shape the performance issue measured, `turnutils_uclient -m 20 -n 2000
// -l 160 -c`: 20 clients, each sending 2000 messages of 160 bytes as
// ChannelData every 20 ms to an echo peer, so a run takes about 40 s.
var (
	uclientClients  = flag.Int("turnbench.m", 20, "BenchmarkRelayVsCoturn: turnutils_uclient clients (-m)")
	uclientMessages = flag.Int("turnbench.n", 2000, "BenchmarkRelayVsCoturn: messages per client (-n)")
	uclientLength   = flag.Int("turnbench.l", 160, "BenchmarkRelayVsCoturn: message length (-l)")
)

// BenchmarkRelayVsCoturn measures the CPU each relayed packet costs the
// embedded relay and coturn's turnserver, under the same client, the same
// peer and the same shape, the two servers alternately (b.N rounds of
// both, on a quiet machine: go test -run '^$' -bench RelayVsCoturn
// -benchtime 3x ./turn/). It reports microseconds of server CPU per
// relayed packet for each (a packet is one message one way: client to
// peer, or the echo back) and their ratio. The embedded relay runs in
// this process, whose CPU is read with getrusage; coturn's from
// /proc/PID/stat. It is skipped when coturn is not installed.
func BenchmarkRelayVsCoturn(b *testing.B) {
	for _, bin := range []string{"turnserver", "turnutils_uclient", "turnutils_peer"} {
		if _, err := exec.LookPath(bin); err != nil {
			b.Skipf("%s not installed (Debian: apt-get install coturn)", bin)
		}
	}
	peerPort := freeUDPPort(b)
	startProcess(b, "turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	packets := float64(2 * *uclientClients * *uclientMessages)
	var ours, theirs serverCost
	for range b.N {
		theirs.add(runCoturn(b, peerPort))
		ours.add(runEmbedded(b, peerPort))
	}
	perPacket := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) / packets }
	b.ReportMetric(perPacket(ours.cpu), "embedded-µs/pkt")
	b.ReportMetric(perPacket(theirs.cpu), "coturn-µs/pkt")
	b.ReportMetric(float64(ours.switches)/float64(b.N)/packets, "embedded-cs/pkt")
	b.ReportMetric(float64(theirs.switches)/float64(b.N)/packets, "coturn-cs/pkt")
	if theirs.cpu > 0 {
		b.ReportMetric(float64(ours.cpu)/float64(theirs.cpu), "embedded/coturn")
	}
	b.ReportMetric(0, "ns/op") // a round is two 40 s runs: its wall time says nothing
}

// serverCost is what a server spent on a run: CPU (user and system) and
// context switches (voluntary and not), the sleeps and wake-ups of its
// threads.
type serverCost struct {
	cpu      time.Duration
	switches int64
}

func (c *serverCost) add(d serverCost) { c.cpu += d.cpu; c.switches += d.switches }

func (c serverCost) sub(d serverCost) serverCost {
	return serverCost{cpu: c.cpu - d.cpu, switches: c.switches - d.switches}
}

// runEmbedded runs the load against a fresh embedded relay that may reach
// loopback peers, and returns what this process spent meanwhile.
func runEmbedded(b *testing.B, peerPort int) serverCost {
	cfg := testConfig()
	cfg.TCPPort = -1
	cfg.AllowPeers = []string{"127.0.0.0/8"}
	cfg.MaxAllocationsPerIdentity = 10 * *uclientClients
	r := startRelay(b, func(c *Config) { *c = cfg })
	ice := r.ICEServers("bench")
	before := selfCost(b)
	uclient(b, r.UDPAddr().Port, peerPort, ice[0].Username, ice[0].Credential)
	cost := selfCost(b).sub(before)
	r.Close()
	return cost
}

// runCoturn runs the load against a fresh turnserver (long-term
// credentials, loopback peers allowed) and returns what it spent.
func runCoturn(b *testing.B, peerPort int) serverCost {
	port := freeUDPPort(b)
	dir := b.TempDir()
	p := startProcess(b, "turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
		"--listening-port="+strconv.Itoa(port), "--lt-cred-mech", "--user=bench:bench-password", "--realm=bench",
		"--no-tls", "--no-dtls", "--no-tcp", "--no-cli", "--allow-loopback-peers", "--no-stdout-log",
		"--log-file="+filepath.Join(dir, "turn.log"), "--pidfile="+filepath.Join(dir, "turn.pid"),
		"--userdb="+filepath.Join(dir, "turndb"))
	waitSTUN(b, port)
	before := procCost(b, p.Process.Pid)
	uclient(b, port, peerPort, "bench", "bench-password")
	cost := procCost(b, p.Process.Pid).sub(before)
	stopProcess(p)
	return cost
}

// uclient runs turnutils_uclient against the server on port and fails
// the benchmark if it fails.
func uclient(b *testing.B, port, peerPort int, user, password string) {
	b.Helper()
	out, err := exec.Command("turnutils_uclient", "-c",
		"-m", strconv.Itoa(*uclientClients), "-n", strconv.Itoa(*uclientMessages), "-l", strconv.Itoa(*uclientLength),
		"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(port),
		"-u", user, "-w", password, "127.0.0.1").CombinedOutput()
	if err != nil {
		b.Fatalf("turnutils_uclient: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "Total lost packets") || strings.Contains(line, "Total transmit time") {
			b.Logf("port %d: %s", port, strings.TrimSpace(line))
		}
	}
}

// startProcess starts name with args, killed at the end of the benchmark.
func startProcess(b *testing.B, name string, args ...string) *exec.Cmd {
	b.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	b.Cleanup(func() { stopProcess(cmd) })
	return cmd
}

// stopProcess kills cmd and reaps it; a second call does nothing.
func stopProcess(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// freeUDPPort is a loopback UDP port free a moment ago.
func freeUDPPort(b *testing.B) int {
	b.Helper()
	c, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// waitSTUN polls a STUN binding request to 127.0.0.1:port until it is
// answered: the server is serving.
func waitSTUN(b *testing.B, port int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if c, err := stun.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			done := make(chan error, 1)
			err = c.Start(stun.MustBuild(stun.TransactionID, stun.BindingRequest), func(e stun.Event) { done <- e.Error })
			if err == nil {
				select {
				case err = <-done:
				case <-time.After(200 * time.Millisecond):
					err = context.DeadlineExceeded
				}
			}
			c.Close()
			if err == nil {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("turnserver on port %d did not answer STUN within 10 s", port)
}

// selfCost is this process's user and system CPU time and context
// switches so far, over all its threads.
func selfCost(b *testing.B) serverCost {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return serverCost{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), switches: ru.Nvcsw + ru.Nivcsw}
}

// procCost is process pid's CPU time and the context switches of its
// live threads so far.
func procCost(b *testing.B, pid int) serverCost {
	b.Helper()
	return serverCost{cpu: procCPU(b, pid), switches: procSwitches(b, pid)}
}

// procSwitches sums the context switches of process pid's threads, from
// /proc/PID/task/TID/status (coturn keeps its threads for its life).
func procSwitches(b *testing.B, pid int) int64 {
	b.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("threads of %d: %v", pid, err)
	}
	var total int64
	for _, path := range tasks {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue // a thread that ended meanwhile
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(name, "ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
				total += n
			}
		}
	}
	return total
}

// procCPU is process pid's user and system CPU time so far, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s: the USER_HZ
// of every Linux ABI Go supports).
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	var ticks int64
	for _, f := range fields[11:13] { // utime and stime: fields 14 and 15 overall
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatalf("parse /proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
