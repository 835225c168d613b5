package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// fleet is what -spawn-fleet starts for one run: a redis-server on a free
// loopback port, in a temporary directory with persistence off, and
// instances of the media-service binary on it, each in dev mode (one dev
// key pair: a token is good on every instance) with its own free ports,
// its MEDIA_PUBLIC_URL naming its signaling port, as a fleet behind no
// proxy runs. cmd/media-service's fleet tests start theirs the same way.
type fleet struct {
	redis     *exec.Cmd
	redisDone chan struct{} // closed when redis has been waited for
	redisAddr string        // 127.0.0.1:port
	dir       string
	nodes     []*spawned
}

// fleetDrainTimeout is each instance's MEDIA_DRAIN_TIMEOUT: long enough
// for every participant of a drained instance to move make before break
// (a move waits up to 5 s for the new session's tracks) on a loaded
// machine, so the drain never closes a session that is still moving.
const fleetDrainTimeout = "20s"

// spawnFleet starts redis-server and n instances of bin on it, each sized
// for maxSessions. On error everything it started is stopped.
func spawnFleet(ctx context.Context, bin string, n, maxSessions int, stderr io.Writer) (*fleet, error) {
	f := &fleet{}
	if err := f.startRedis(ctx, stderr); err != nil {
		return nil, err
	}
	for range n {
		port, err := freePort()
		if err != nil {
			f.stop()
			return nil, err
		}
		env := append(spawnEnv(maxSessions),
			"PORT="+strconv.Itoa(port), "MEDIA_PUBLIC_URL=http://127.0.0.1:"+strconv.Itoa(port),
			"MEDIA_REDIS_URL=redis://"+f.redisAddr, "MEDIA_DRAIN_TIMEOUT="+fleetDrainTimeout)
		s, err := spawn(ctx, bin, env, "", stderr)
		if err != nil {
			f.stop()
			return nil, err
		}
		f.nodes = append(f.nodes, s)
	}
	return f, nil
}

// redisStartTimeout bounds the wait for redis-server to answer PING.
const redisStartTimeout = 20 * time.Second

// startRedis runs redis-server on a free loopback port and waits until it
// answers PING.
func (f *fleet) startRedis(ctx context.Context, stderr io.Writer) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("-spawn-fleet needs redis-server on PATH (Debian: apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	f.redisAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if f.dir, err = os.MkdirTemp("", "mediaload-redis-"); err != nil {
		return fmt.Errorf("spawn redis: %w", err)
	}
	f.redis = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", f.dir, "--logfile", "")
	f.redis.Stderr = stderr // its log, on stdout, is not ours to show
	if err := f.redis.Start(); err != nil {
		os.RemoveAll(f.dir)
		return fmt.Errorf("spawn %s: %w", bin, err)
	}
	f.redisDone = make(chan struct{})
	go func() { _ = f.redis.Wait(); close(f.redisDone) }()
	if err := f.awaitRedis(ctx); err != nil {
		f.stop()
		return err
	}
	return nil
}

// awaitRedis polls PING until redis answers, exits, or the start timeout.
func (f *fleet) awaitRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, redisStartTimeout)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: f.redisAddr, MaxRetries: -1})
	defer rc.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if rc.Ping(ctx).Err() == nil {
			return nil
		}
		select {
		case <-f.redisDone:
			return fmt.Errorf("spawn redis on %s: exited at start", f.redisAddr)
		case <-ctx.Done():
			return fmt.Errorf("spawn redis on %s: no answer to PING: %w", f.redisAddr, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop stops the instances at once (each drains on SIGTERM), then Redis,
// and removes Redis's directory.
func (f *fleet) stop() error {
	errs := make([]error, len(f.nodes))
	var wg sync.WaitGroup
	for i, s := range f.nodes {
		wg.Go(func() { errs[i] = s.stop() })
	}
	wg.Wait()
	if f.redis != nil {
		_ = f.redis.Process.Signal(syscall.SIGTERM)
		<-f.redisDone
		os.RemoveAll(f.dir)
	}
	return errors.Join(errs...)
}

// byHost returns the instance whose signaling listens at host (host:port),
// or nil.
func (f *fleet) byHost(host string) *spawned {
	for _, s := range f.nodes {
		if u, err := url.Parse(s.httpURL); err == nil && u.Host == host {
			return s
		}
	}
	return nil
}

// freePort asks the kernel for a free TCP port on loopback. An instance's
// port must be known before it starts, since its MEDIA_PUBLIC_URL names it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
