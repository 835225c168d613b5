package turn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// testConfig is a relay on loopback with every port picked by the kernel.
func testConfig() Config {
	return Config{
		Enabled: true, UDPPort: 0, TCPPort: 0, TLSPort: 0,
		BindAddr: "127.0.0.1", TCPBindAddr: "127.0.0.1", RelayIP: "127.0.0.1",
		Realm: "test.media-service", Secret: testSecret, CredentialTTL: 10 * time.Minute,
		MaxAllocationsPerIdentity: 10, MaxAllocations: 100,
		UnauthRate: 1000, UnauthBurst: 1000,
		MaxConns: 100, MaxConnsPerIP: 64, ConnIdleTimeout: 30 * time.Second, ConnAllocateTimeout: 30 * time.Second,
	}
}

// testRelay is a running relay with a metric reader and a UDP echo socket
// standing in for the SFU's media address.
type testRelay struct {
	*Server
	reader *sdkmetric.ManualReader
	media  *net.UDPConn
	clock  *testClock
}

// testClock is the relay's clock, which a test can move forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }
func discardLog() *slog.Logger               { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func loopback(port int) *net.UDPAddr         { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port} }

// startRelay starts a relay with cfg changed by mutate, whose own media
// address is a fresh echo socket, and closes both at the end of the test.
func startRelay(t testing.TB, mutate func(*Config)) *testRelay {
	t.Helper()
	return startRelayWith(t, mutate, func(*Server) {})
}

// startRelayWith is startRelay with a hook that may change the server
// before it runs.
func startRelayWith(t testing.TB, mutate func(*Config), prepare func(*Server)) *testRelay {
	t.Helper()
	media := echoSocket(t)
	cfg := testConfig()
	mutate(&cfg)
	r := runRelay(t, cfg, Options{Media: []net.Addr{media.LocalAddr()}}, prepare)
	r.media = media
	return r
}

// runRelay makes a relay of cfg and opts, with a test clock, a discarded
// log and a metric reader, lets prepare change it, runs it, and closes it
// at the end of the test.
func runRelay(t testing.TB, cfg Config, opts Options, prepare func(*Server)) *testRelay {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	opts.Log, opts.Meter = discardLog(), mp.Meter("turn-test")
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clock := &testClock{}
	srv.now = clock.now
	prepare(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Run = %v; want nil", err)
		}
		mp.Shutdown(context.Background())
	})
	return &testRelay{Server: srv, reader: reader, clock: clock}
}

// echoSocket is a UDP socket on loopback that sends every datagram back.
func echoSocket(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

// clientConn is the socket a Pion TURN client speaks over: a UDP socket,
// or a TCP or TLS connection framed by NewSTUNConn.
func clientConn(t testing.TB, r *testRelay, transport string) (net.PacketConn, string) {
	t.Helper()
	switch transport {
	case transportUDP:
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return pc, r.UDPAddr().String()
	case transportTCP:
		c, err := net.Dial("tcp", r.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		return pionturn.NewSTUNConn(c), r.TCPAddr().String()
	case transportTLS:
		c, err := tls.Dial("tcp", r.TLSAddr().String(), &tls.Config{RootCAs: r.tlsRoots(t)})
		if err != nil {
			t.Fatal(err)
		}
		return pionturn.NewSTUNConn(c), r.TLSAddr().String()
	}
	t.Fatalf("unknown transport %q", transport)
	return nil, ""
}

// tlsRoots trusts the relay's own (self-signed) certificate.
func (r *testRelay) tlsRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(r.tlsConfig.Certificates[0].Leaf)
	return pool
}

// turnClient is a listening Pion TURN client over transport with the given
// credential, closed at the end of the test.
func turnClient(t testing.TB, r *testRelay, transport, username, password string) *pionturn.Client {
	t.Helper()
	conn, addr := clientConn(t, r, transport)
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: addr, Conn: conn, Username: username, Password: password,
		RTO: 100 * time.Millisecond, LoggerFactory: quietPion(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// allocate allocates through a fresh client with a credential minted for
// identity, and returns the relayed conn or the error.
func allocate(t testing.TB, r *testRelay, transport, identity string) (net.PacketConn, error) {
	t.Helper()
	ice := r.ICEServers(identity)
	c := turnClient(t, r, transport, ice[0].Username, ice[0].Credential)
	relayed, err := c.Allocate()
	if err == nil {
		t.Cleanup(func() { relayed.Close() })
	}
	return relayed, err
}

// turnCode is the TURN error code of err, or 0.
func turnCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	return 0
}

// roundTrip sends msg through relayed to peer and returns the reply.
func roundTrip(t testing.TB, relayed net.PacketConn, peer net.Addr, msg string) (string, error) {
	t.Helper()
	if _, err := relayed.WriteTo([]byte(msg), peer); err != nil {
		return "", err
	}
	if err := relayed.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, from, err := relayed.ReadFrom(buf)
	if err != nil {
		return "", err
	}
	if from.String() != peer.String() {
		t.Errorf("reply from %s; want %s", from, peer)
	}
	return string(buf[:n]), nil
}

// counter is the sum of the data points of the named int64 sum whose
// attributes include every one of attrs.
func (r *testRelay) counter(t *testing.T, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T; want an int64 sum", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				if hasAll(dp.Attributes, attrs) {
					total += dp.Value
				}
			}
		}
	}
	return total
}

func hasAll(set attribute.Set, attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files and returns their paths.
func writeTestCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "turn test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, "CERTIFICATE", der)
	write(keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func noopMeter() metric.Meter { return noop.NewMeterProvider().Meter("turn-bench") }
