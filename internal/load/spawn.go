package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// spawned is a media-service instance started by mediaload for one run
// (-spawn): dev mode, every listener on 127.0.0.1 with a free port, TURN
// off (loopback peers never need it). Its JSON logs are read until the
// server_started line gives the bound addresses, then discarded.
type spawned struct {
	cmd     *exec.Cmd
	httpURL string
	opsURL  string
	logDone chan struct{} // closed when the log reader has finished
}

// spawnEnv is the instance's environment on top of ours. maxSessions
// leaves room for every participant of the run, in the instance, in one
// room (a fanout to 50 subscribers is a room of 51) and in rooms of one
// (a capacity search's meetings of 5 go to 200 rooms).
func spawnEnv(maxSessions int) []string {
	return []string{
		"PORT=0", "MEDIA_HTTP_HOST=127.0.0.1",
		"MEDIA_OPS_PORT=0", "MEDIA_OPS_HOST=127.0.0.1",
		"MEDIA_ICE_UDP_PORT=0", "MEDIA_ICE_TCP_PORT=-1", "MEDIA_ICE_BIND_ADDR=127.0.0.1",
		"MEDIA_TURN_ENABLED=false",
		"MEDIA_API_KEY=", "MEDIA_API_SECRET=",
		"MEDIA_MAX_SESSIONS=" + strconv.Itoa(maxSessions),
		"MEDIA_MAX_ROOM_PARTICIPANTS=" + strconv.Itoa(maxSessions),
		"MEDIA_MAX_ROOMS=" + strconv.Itoa(maxSessions),
		"MEDIA_MAX_SESSIONS_PER_IP=0", // every synthetic participant comes from 127.0.0.1
		"MEDIA_MAX_CONNS_PER_IP=0",    // and so does every one of their connections
		"MEDIA_DRAIN_TIMEOUT=5s",
	}
}

// spawnRelayEnv turns the spawned instance's TURN relay on for -relay, on
// loopback and UDP only, with the rate limit of unauthenticated requests
// out of the way: every synthetic participant comes from 127.0.0.1.
var spawnRelayEnv = []string{
	"MEDIA_TURN_ENABLED=true", "MEDIA_TURN_UDP_PORT=0", "MEDIA_TURN_TCP_PORT=-1",
	"MEDIA_TURN_BIND_ADDR=127.0.0.1", "MEDIA_TURN_RELAY_IP=127.0.0.1",
	"MEDIA_TURN_UNAUTH_RATE=1000000", "MEDIA_TURN_UNAUTH_BURST=1000000",
}

// spawn starts bin and waits (at most 30 s) for it to log its addresses.
// Its environment is ours with env on top (spawnEnv, and a fleet's
// variables); its stderr goes to stderr (nil: discarded). With cpus (a
// taskset -c list) it runs pinned to those CPUs.
func spawn(ctx context.Context, bin string, env []string, cpus string, stderr io.Writer) (*spawned, error) {
	cmd, err := serveCommand(bin, cpus)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Environ(), env...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("spawn %s: stdout: %w", bin, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("spawn %s: %w", bin, err)
	}
	s := &spawned{cmd: cmd, logDone: make(chan struct{})}
	addrs := make(chan [2]string, 1)
	go s.readLog(out, addrs)
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case a, ok := <-addrs:
		if !ok {
			s.stop()
			return nil, fmt.Errorf("spawn %s: exited before server_started", bin)
		}
		s.httpURL, s.opsURL = "http://"+a[0], "http://"+a[1]
		return s, nil
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	case <-t.C:
		s.stop()
		return nil, fmt.Errorf("spawn %s: no server_started log line within 30s", bin)
	}
}

// serveCommand is `bin serve`, under `taskset -c cpus` when cpus is set
// (taskset execs bin in its own process, so signals reach the instance).
func serveCommand(bin, cpus string) (*exec.Cmd, error) {
	name, args, err := pinned(cpus, bin, "serve")
	if err != nil {
		return nil, err
	}
	return exec.Command(name, args...), nil
}

// pinned is the command line that runs bin with args on the CPUs of the
// taskset list cpus, or bin itself when cpus is empty.
func pinned(cpus, bin string, args ...string) (string, []string, error) {
	if cpus == "" {
		return bin, args, nil
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return "", nil, fmt.Errorf("-cpus runs the instance under taskset (util-linux), which is not installed: %w", err)
	}
	return taskset, append([]string{"-c", cpus, bin}, args...), nil
}

// readLog finds the server_started line, hands its addresses over, and
// drains the rest so the instance never blocks on a full pipe.
func (s *spawned) readLog(r io.Reader, addrs chan<- [2]string) {
	defer close(s.logDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	sent := false
	for sc.Scan() {
		if sent {
			continue
		}
		var line struct {
			Msg  string `json:"msg"`
			HTTP string `json:"http_addr"`
			Ops  string `json:"ops_addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "server_started" {
			addrs <- [2]string{line.HTTP, line.Ops}
			sent = true
		}
	}
	if !sent {
		close(addrs)
	}
	_, _ = io.Copy(io.Discard, r)
}

// terminate sends SIGTERM, which starts the instance's drain, and
// returns: stop still waits for the process.
func (s *spawned) terminate() error {
	return s.cmd.Process.Signal(syscall.SIGTERM)
}

// stop sends SIGTERM, so the instance drains as in production, and waits;
// after 15 s it is killed.
func (s *spawned) stop() error {
	_ = s.terminate()
	t := time.AfterFunc(15*time.Second, func() { _ = s.cmd.Process.Kill() })
	defer t.Stop()
	<-s.logDone
	err := s.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("spawned instance exit: %w", err)
	}
	return err
}
