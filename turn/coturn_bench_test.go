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
	var ours, theirs time.Duration
	for range b.N {
		theirs += runCoturn(b, peerPort)
		ours += runEmbedded(b, peerPort)
	}
	perPacket := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) / packets }
	b.ReportMetric(perPacket(ours), "embedded-µs/pkt")
	b.ReportMetric(perPacket(theirs), "coturn-µs/pkt")
	if theirs > 0 {
		b.ReportMetric(float64(ours)/float64(theirs), "embedded/coturn")
	}
	b.ReportMetric(0, "ns/op") // a round is two 40 s runs: its wall time says nothing
}

// runEmbedded runs the load against a fresh embedded relay that may reach
// loopback peers, and returns the CPU this process spent meanwhile.
func runEmbedded(b *testing.B, peerPort int) time.Duration {
	cfg := testConfig()
	cfg.TCPPort = -1
	cfg.AllowPeers = []string{"127.0.0.0/8"}
	cfg.MaxAllocationsPerIdentity = 10 * *uclientClients
	r := startRelay(b, func(c *Config) { *c = cfg })
	ice := r.ICEServers("bench")
	before := selfCPU(b)
	uclient(b, r.UDPAddr().Port, peerPort, ice[0].Username, ice[0].Credential)
	cpu := selfCPU(b) - before
	r.Close()
	return cpu
}

// runCoturn runs the load against a fresh turnserver (long-term
// credentials, loopback peers allowed) and returns the CPU it spent.
func runCoturn(b *testing.B, peerPort int) time.Duration {
	port := freeUDPPort(b)
	dir := b.TempDir()
	p := startProcess(b, "turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
		"--listening-port="+strconv.Itoa(port), "--lt-cred-mech", "--user=bench:bench-password", "--realm=bench",
		"--no-tls", "--no-dtls", "--no-tcp", "--no-cli", "--allow-loopback-peers", "--no-stdout-log",
		"--log-file="+filepath.Join(dir, "turn.log"), "--pidfile="+filepath.Join(dir, "turn.pid"),
		"--userdb="+filepath.Join(dir, "turndb"))
	waitSTUN(b, port)
	before := procCPU(b, p.Process.Pid)
	uclient(b, port, peerPort, "bench", "bench-password")
	cpu := procCPU(b, p.Process.Pid) - before
	stopProcess(p)
	return cpu
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

// selfCPU is this process's user and system CPU time so far.
func selfCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
