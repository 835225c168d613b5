package edge

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/connlimit"
)

// Floods of TCP connections that never become a session: each test opens
// real connections to the real HTTP listener and checks that the
// connection bounds and the HTTP timeouts hold them to a fixed cost,
// while /health and real participants are still served.

// floodSrc is where floods come from: another loopback address (Linux
// routes all of 127/8 to the loopback), so the flood fills its own
// bucket, not the one of the participants on 127.0.0.1.
var (
	floodSrc = &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	localSrc = &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}
)

// dialFrom opens a TCP connection from src to addr and sends nothing;
// the test's cleanup closes it.
func dialFrom(t *testing.T, src *net.TCPAddr, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src.IP, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// lifetime is how long a connection lasted, from just before its dial
// until a read saw the server close it, and the error that read returned.
type lifetime struct {
	d   time.Duration
	err error
}

// closedByServer reports whether err is how a read ends when the server
// has closed the connection: EOF, or a reset for a refused one.
func closedByServer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// watchClose reads c (which sends nothing) until the server closes it,
// at most until dialed+limit, and reports the connection's lifetime.
func watchClose(c net.Conn, dialed time.Time, limit time.Duration) <-chan lifetime {
	ch := make(chan lifetime, 1)
	go func() { ch <- readToClose(c, dialed, limit) }()
	return ch
}

func readToClose(c net.Conn, dialed time.Time, limit time.Duration) lifetime {
	_ = c.SetReadDeadline(dialed.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF // io.Copy reports EOF as nil
	}
	return lifetime{time.Since(dialed), err}
}

// connLife opens a connection from src to addr that sends nothing, and
// reports how long it lasted. A refused connection can be reset before
// its dial returns: that counts as closed at once.
func connLife(src *net.TCPAddr, addr net.Addr, limit time.Duration) lifetime {
	dialed := time.Now()
	d := net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		return lifetime{time.Since(dialed), err}
	}
	defer c.Close()
	return readToClose(c, dialed, limit)
}

// bucketConns is how many open connections the listener counts for ip's
// bucket.
func bucketConns(ts *testServer, ip string) int {
	return ts.srv.conns.Held(connlimit.Bucket(netip.MustParseAddr(ip)))
}

// bucketSessions is how many sessions ip's bucket holds now.
func bucketSessions(ts *testServer, ip string) int {
	return ts.srv.perAddr.Held(connlimit.Bucket(netip.MustParseAddr(ip)))
}

// TestIdleConnFloodBounded: a flood of connections that never send a
// byte. Beyond the bound each one is reset right after its accept; the
// ones within it are held only until the header timeout. The refusals
// are counted by reason, and once it is over no connection is counted.
func TestIdleConnFloodBounded(t *testing.T) {
	const headerTimeout = 2 * time.Second
	tests := []struct {
		name   string
		edit   func(*Config)
		src    *net.TCPAddr
		flood  int
		held   int              // connections the server keeps until the header timeout
		reason connlimit.Reason // of the refusals
	}{
		{"per address", func(c *Config) { c.MaxConnsPerIP, c.MaxSessionsPerIP = 8, 4 }, floodSrc, 200, 8, connlimit.ReasonPerIP},
		{"in total", func(c *Config) { c.MaxConnsPerIP, c.MaxConns, c.MaxSessions = 0, 8, 4 }, localSrc, 100, 8, connlimit.ReasonTotal},
		// Behind a proxy every peer is the proxy: only the total applies.
		{"behind a proxy", func(c *Config) {
			c.ClientIPHeader, c.MaxConnsPerIP, c.MaxConns, c.MaxSessions = "Fly-Client-IP", 8, 30, 4
		}, floodSrc, 100, 30, connlimit.ReasonTotal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config) { tt.edit(c); c.HTTPHeaderTimeout = headerTimeout })
			ends := make(chan lifetime, tt.flood)
			for range tt.flood {
				go func() { ends <- connLife(tt.src, ts.srv.HTTPAddr(), headerTimeout+5*time.Second) }()
			}
			var held, refused int
			var slowestRefusal time.Duration
			for i := range tt.flood {
				lt := <-ends
				if !closedByServer(lt.err) {
					t.Fatalf("connection %d: read = %v after %s; want EOF or reset by the server", i, lt.err, lt.d.Round(time.Millisecond))
				}
				if lt.d < headerTimeout {
					refused++
					slowestRefusal = max(slowestRefusal, lt.d)
				} else {
					held++
				}
			}
			t.Logf("%d refused, the slowest closed after %s", refused, slowestRefusal.Round(time.Millisecond))
			if held != tt.held || refused != tt.flood-tt.held {
				t.Errorf("%d connections: %d held until the header timeout, %d closed before it; want %d and %d",
					tt.flood, held, refused, tt.held, tt.flood-tt.held)
			}
			if got := ts.counter(t, "media_http_conn_refusals", "reason", string(tt.reason)); got != int64(tt.flood-tt.held) {
				t.Errorf("media_http_conn_refusals{reason=%s} = %d; want %d", tt.reason, got, tt.flood-tt.held)
			}
			waitFor(t, 5*time.Second, "no connection counted", func() bool {
				return ts.srv.conns.Open() == 0 && ts.counter(t, "media_http_conns_active", "", "") == 0
			})
		})
	}
}

// flooder opens connections from floodSrc one after another until
// stopped, each waiting for the server to close it: a flood that goes on
// while the test does other things.
type flooder struct {
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	n        int           // connections opened; read after done
	longest  time.Duration // the longest any of them lasted; read after done
	err      error         // the first failure; read after done
}

func startFlood(addr net.Addr, limit time.Duration) *flooder {
	f := &flooder{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			lt := connLife(floodSrc, addr, limit)
			f.n++
			f.longest = max(f.longest, lt.d)
			if !closedByServer(lt.err) {
				f.err = fmt.Errorf("flood connection %d: %v after %s; want it reset at once", f.n, lt.err, lt.d)
				return
			}
		}
	}()
	return f
}

// end stops the flood and waits for it; it may be called again.
func (f *flooder) end() {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
}

// getHealth asks for /health over a new connection from src.
func getHealth(t *testing.T, ts *testServer, src *net.TCPAddr) error {
	t.Helper()
	d := net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := hc.Get(ts.http + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health = %d; want 200", resp.StatusCode)
	}
	return nil
}

// TestConnFloodLeavesOthersServed: one address holds all the connections
// it may and keeps opening more. Each of those is reset at once, while
// /health answers and participants from another address join and get
// media. When the flood ends the instance is back where it started:
// nothing counted, the goroutines and files of the flood gone, and the
// flooding address can connect again.
func TestConnFloodLeavesOthersServed(t *testing.T) {
	const perIP = 16
	ts := startServer(t, func(c *Config) { c.MaxConnsPerIP, c.MaxSessionsPerIP, c.HTTPHeaderTimeout = perIP, 8, time.Minute })
	baseline, fds := runtime.NumGoroutine(), openFDs(t)

	held := make([]net.Conn, perIP)
	for i := range held {
		held[i] = dialFrom(t, floodSrc, ts.srv.HTTPAddr())
	}
	waitFor(t, 5*time.Second, "the flooding address at its bound", func() bool { return bucketConns(ts, "127.0.0.2") == perIP })
	flood := startFlood(ts.srv.HTTPAddr(), 5*time.Second)
	defer flood.end()

	if err := getHealth(t, ts, localSrc); err != nil {
		t.Fatalf("/health during the flood: %v", err)
	}
	alice, bob := ts.dial(t, "demo", "alice"), ts.dial(t, "demo", "bob")
	bobRecv := receive(t, bob)
	pub := publish(t, alice)
	waitFor(t, 15*time.Second, "bob receives alice's media during the flood", func() bool {
		st, _ := bobRecv.stats(alice.ID(), "video")
		return st.packets >= 10
	})
	flood.end()
	if flood.err != nil {
		t.Fatal(flood.err)
	}
	if refused := ts.counter(t, "media_http_conn_refusals", "reason", string(connlimit.ReasonPerIP)); flood.n == 0 || refused != int64(flood.n) {
		t.Errorf("media_http_conn_refusals{reason=per_ip} = %d after a flood of %d; want every one refused", refused, flood.n)
	}
	if flood.longest >= time.Second {
		t.Errorf("longest refused connection of the flood lasted %s; want it reset at once", flood.longest)
	}
	t.Logf("flood of %d connections during the join, each closed within %s", flood.n, flood.longest.Round(time.Millisecond))

	// The flood ends: the participants leave, the held connections close.
	pub.close()
	leaveNormally(t, alice)
	leaveNormally(t, bob)
	bobRecv.wg.Wait()
	for _, c := range held {
		c.Close()
	}
	waitFor(t, 5*time.Second, "sessions and connections released", func() bool {
		return ts.srv.Sessions().Len() == 0 && ts.srv.conns.Open() == 0 && bucketConns(ts, "127.0.0.2") == 0
	})
	waitFor(t, 10*time.Second, fmt.Sprintf("goroutines back to within 5 of %d", baseline), func() bool {
		return runtime.NumGoroutine() <= baseline+5
	})
	waitFor(t, 10*time.Second, fmt.Sprintf("open files back to %d", fds), func() bool { return openFDs(t) <= fds })
	if err := getHealth(t, ts, floodSrc); err != nil {
		t.Errorf("/health from the flooding address after the flood: %v", err)
	}
}

// openFDs is how many files the test process (clients and server) has
// open.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count open files: %v", err)
	}
	return len(fds)
}

// TestKeepAliveConnClosedWhenIdle: a connection that made requests and
// then goes silent is closed after the idle timeout, on the HTTP port and
// on the ops port, though the header timeout is far longer.
func TestKeepAliveConnClosedWhenIdle(t *testing.T) {
	const idle = time.Second
	ts := startServer(t, func(c *Config) { c.HTTPIdleTimeout, c.HTTPHeaderTimeout = idle, time.Minute })
	tests := []struct {
		name, path string
		addr       net.Addr
	}{
		{"http", "/health", ts.srv.HTTPAddr()},
		{"ops", "/debug/pprof/cmdline", ts.srv.OpsAddr()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialFrom(t, localSrc, tt.addr)
			br := bufio.NewReader(c)
			for i := range 2 { // the second request proves the connection is kept alive
				getOver(t, c, br, tt.path)
				if i == 0 {
					continue
				}
				if n := br.Buffered(); n != 0 {
					t.Fatalf("%d bytes after the response; want none", n)
				}
				lt := <-watchClose(c, time.Now(), idle+5*time.Second)
				if !closedByServer(lt.err) || lt.d < idle-100*time.Millisecond {
					t.Errorf("idle keep-alive connection: read = %v after %s; want EOF after the %s idle timeout", lt.err, lt.d.Round(time.Millisecond), idle)
				}
			}
		})
	}
}

// getOver sends GET path on c and reads the response through br.
func getOver(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: edge\r\n\r\n", path); err != nil {
		t.Fatalf("write GET %s: %v", path, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET %s = %d (close %v); want 200 on a kept-alive connection", path, resp.StatusCode, resp.Close)
	}
}

// TestUnsentBodyBounded: a request that declares a body and never sends
// it is cut off by the header timeout too, instead of holding its
// connection while the server waits to discard the body.
func TestUnsentBodyBounded(t *testing.T) {
	const timeout = time.Second
	ts := startServer(t, func(c *Config) { c.HTTPHeaderTimeout = timeout })
	sent := time.Now()
	c := dialFrom(t, localSrc, ts.srv.HTTPAddr())
	if _, err := fmt.Fprint(c, "GET /health HTTP/1.1\r\nHost: edge\r\nContent-Length: 100000\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	lt := <-watchClose(c, sent, timeout+5*time.Second)
	if !closedByServer(lt.err) {
		t.Errorf("request with a body that never comes: read = %v after %s; want the connection closed after the %s timeout",
			lt.err, lt.d.Round(time.Millisecond), timeout)
	}
}

// TestConnSlotSurvivesUpgrade: a WebSocket holds the slot of the
// connection it took over while the session lives, and gives it back
// once, however the session ends. With a bound of 3 per address, 6
// sessions in a row from one address each find a slot.
func TestConnSlotSurvivesUpgrade(t *testing.T) {
	const perIP, cycles = 3, 6
	tests := []struct {
		name string
		end  func(t *testing.T, ts *testServer, id string)
	}{
		{"client leaves", func(t *testing.T, ts *testServer, id string) {
			c := ts.dial(t, "demo", id)
			expectBucket(t, ts, 1)
			leaveNormally(t, c)
		}},
		{"client vanishes", func(t *testing.T, ts *testServer, id string) {
			conn := rawDial(t, ts, ts.token(t, "demo", id, bothGrants), 0)
			expectBucket(t, ts, 1)
			conn.NetConn().Close() // no close frame: the server finds out by reading
		}},
		{"server closes", func(t *testing.T, ts *testServer, id string) {
			c := ts.dial(t, "demo", id)
			expectBucket(t, ts, 1)
			onlySession(t, ts).end(signal.ReasonServerShutdown)
			<-c.Done()
			c.Close()
		}},
		{"refused before the upgrade", func(t *testing.T, ts *testServer, id string) {
			dialRefusal(t, ts, "not-a-token", "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.MaxConnsPerIP, c.MaxSessionsPerIP = perIP, 1 })
			for i := range cycles {
				tt.end(t, ts, fmt.Sprintf("p%d", i))
				// The connection's slot comes back when it closes, the
				// session's (MaxSessionsPerIP 1) when its teardown is
				// over, which may be later: the next cycle needs both.
				waitFor(t, 5*time.Second, fmt.Sprintf("cycle %d: slots given back", i), func() bool {
					return bucketConns(ts, "127.0.0.1") == 0 && ts.srv.conns.Open() == 0 &&
						bucketSessions(ts, "127.0.0.1") == 0
				})
			}
			if got := ts.counter(t, "media_http_conn_refusals", "", ""); got != 0 {
				t.Errorf("media_http_conn_refusals = %d; want 0", got)
			}
		})
	}
}

// expectBucket checks 127.0.0.1's connection count while a session lives.
func expectBucket(t *testing.T, ts *testServer, want int) {
	t.Helper()
	if got := bucketConns(ts, "127.0.0.1"); got != want {
		t.Errorf("connections counted for 127.0.0.1 = %d; want %d", got, want)
	}
}
