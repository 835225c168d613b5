package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

var testKeys = auth.KeyPair{Key: "test-key", Secret: "test-secret-0123456789abcdef01234567"}

// testConfig is a configuration for one in-process instance on loopback
// with short timers, so bounds and keepalives are reached in a test's time.
// The message pacing is lifted (tests that flood must reach the other
// bounds quickly); TestMessagesPaced sets it.
func testConfig() Config {
	return Config{
		HTTPHost: "127.0.0.1", OpsHost: "127.0.0.1",
		DrainTimeout: 5 * time.Second, SessionShards: 4, MaxSessions: 50,
		APIKey: testKeys.Key, APISecret: testKeys.Secret,
		MaxRooms: 10, MaxRoomParticipants: 10, MaxTracks: 4, MaxCandidates: 50,
		SendQueue: 256, SendTimeout: time.Second, WriteTimeout: 2 * time.Second,
		PingInterval: time.Second, IdleTimeout: 3 * time.Second, ReadLimit: 64 << 10,
		MessageRate: 10000, MessageBurst: 10000,
		OfferBurst: 10, OfferInterval: time.Second, NegotiationTimeout: 5 * time.Second,
		RetryAfter: 2 * time.Second, MaxConns: 500, MaxConnsPerIP: 200,
		HTTPHeaderTimeout: 5 * time.Second, HTTPIdleTimeout: 5 * time.Second,
		DataMaxMessage: 15 << 10, DataMessageRate: 10000, DataMessageBurst: 10000, DataMaxBuffered: 1 << 20,
	}
}

// logBuffer collects the instance's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// find returns the first log event with that msg.
func (b *logBuffer) find(msg string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["msg"] == msg {
			return ev
		}
	}
	return nil
}

// testServer is a running instance.
type testServer struct {
	srv    *Server
	url    string // ws://.../v1/rtc
	http   string // http://...
	logs   *logBuffer
	reader *sdkmetric.ManualReader
	cancel context.CancelCauseFunc
	runErr chan error
	api    *webrtc.API
}

// startServer runs an instance with testConfig changed by edit, and
// Options changed by each of with, and stops it (with its drain) when the
// test ends.
func startServer(t *testing.T, edit func(*Config), with ...func(*Options)) *testServer {
	t.Helper()
	cfg := testConfig()
	if edit != nil {
		edit(&cfg)
	}
	ts := &testServer{logs: &logBuffer{}, reader: sdkmetric.NewManualReader(), runErr: make(chan error, 1)}
	log := slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(ts.reader)).Meter("edge_test")
	media, err := sfu.New(sfu.Config{BindAddr: "127.0.0.1", TCPPort: -1,
		ICEDisconnectedTimeout: time.Second, ICEFailedTimeout: time.Second, ICEKeepalive: 200 * time.Millisecond}, meter, log)
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	opts := Options{Log: log, Meter: meter, Media: media}
	for _, w := range with {
		w(&opts)
	}
	ts.srv, err = New(cfg, opts)
	if err != nil {
		media.Close()
		t.Fatalf("New: %v", err)
	}
	addr := ts.srv.HTTPAddr().String()
	ts.url, ts.http = "ws://"+addr+"/v1/rtc", "http://"+addr
	if ts.api, err = client.NewAPI(client.LoopbackOnly); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	ts.cancel = cancel
	go func() { ts.runErr <- ts.srv.Run(ctx) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop drains the instance and waits for Run to return.
func (ts *testServer) stop(t *testing.T) {
	t.Helper()
	ts.cancel(&ShutdownCause{Reason: "test"})
	select {
	case err := <-ts.runErr:
		if err != nil {
			t.Errorf("Run() = %v; want nil", err)
		}
		ts.runErr <- nil // a second stop returns at once
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20s of its context ending")
	}
}

func (ts *testServer) token(t *testing.T, room, identity string, g auth.Grants) string {
	t.Helper()
	s, err := testKeys.Mint(auth.Token{Room: room, Identity: identity, Grants: g, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var bothGrants = auth.Grants{Publish: true, Subscribe: true}

// dial joins room as identity with both grants.
func (ts *testServer) dial(t *testing.T, room, identity string) *client.Client {
	t.Helper()
	return ts.dialWith(t, ts.token(t, room, identity, bothGrants), client.Options{})
}

func (ts *testServer) dialWith(t *testing.T, token string, opts client.Options) *client.Client {
	t.Helper()
	if opts.API == nil {
		opts.API = ts.api
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ts.url, token, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// metric collects the instance's metrics and returns the data of the one
// called name, or nil.
func (ts *testServer) metric(t *testing.T, name string) metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := ts.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	return nil
}

// hasAttr reports whether set has key=value; any set matches an empty key.
func hasAttr(set attribute.Set, key, value string) bool {
	v, ok := set.Value(attribute.Key(key))
	return key == "" || ok && v.AsString() == value
}

// counter sums the data points of a counter whose attributes include
// key=value (any when key is empty).
func (ts *testServer) counter(t *testing.T, name, key, value string) int64 {
	t.Helper()
	sum, _ := ts.metric(t, name).(metricdata.Sum[int64])
	var n int64
	for _, dp := range sum.DataPoints {
		if hasAttr(dp.Attributes, key, value) {
			n += dp.Value
		}
	}
	return n
}

// histogramCount is how many values a histogram recorded whose attributes
// include key=value (any when key is empty).
func (ts *testServer) histogramCount(t *testing.T, name, key, value string) uint64 {
	t.Helper()
	h, _ := ts.metric(t, name).(metricdata.Histogram[float64])
	var n uint64
	for _, dp := range h.DataPoints {
		if hasAttr(dp.Attributes, key, value) {
			n += dp.Count
		}
	}
	return n
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSessionClosed waits until the server holds sessions sessions and
// has counted one session closed for reason. Teardown takes a session out
// of the manager just before it counts the close, so a test that saw the
// session gone and read the counter at once could read it a moment early.
func waitSessionClosed(t *testing.T, ts *testServer, reason string, sessions int) {
	t.Helper()
	var n int
	var closed int64
	done := func() bool {
		n, closed = ts.srv.Sessions().Len(), ts.counter(t, "media_sessions_closed", "reason", reason)
		return n == sessions && closed == 1
	}
	deadline := time.Now().Add(5 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %d sessions, media_sessions_closed{reason=%s} = %d; want %d and 1", n, reason, closed, sessions)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEvent reads c's events until one satisfies match.
func waitEvent(t *testing.T, c *client.Client, timeout time.Duration, what string, match func(*signal.Message) bool) *signal.Message {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: connection ended first (%v)", what, c.Err())
			}
			if match(m) {
				return m
			}
		case <-timer.C:
			t.Fatalf("%s: not within %s", what, timeout)
		}
	}
}

func isType(typ string) func(*signal.Message) bool {
	return func(m *signal.Message) bool { return m.Type == typ }
}

// publisher sends numbered packets on an audio and a video track until
// stopped. Each payload names the track and carries its sequence number,
// so a receiver can check it arrived intact.
type publisher struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func payloadFor(label string, seq uint16) []byte {
	p := fmt.Appendf(nil, "%s#%05d#", label, seq)
	return append(p, bytes.Repeat([]byte{byte(seq)}, 100)...)
}

// publish publishes audio and video on c and starts sending.
func publish(t *testing.T, c *client.Client) *publisher {
	t.Helper()
	audio, err := client.NewAudioTrack("a")
	if err != nil {
		t.Fatal(err)
	}
	video, err := client.NewVideoTrack("v")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, audio, video); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return startSending(t, audio, video)
}

// startSending sends numbered packets on each track, labelled with its
// kind, until the test ends.
func startSending(t *testing.T, tracks ...*webrtc.TrackLocalStaticRTP) *publisher {
	p := &publisher{stop: make(chan struct{})}
	for _, tr := range tracks {
		p.wg.Add(1)
		go p.send(tr, tr.Kind().String())
	}
	t.Cleanup(p.close)
	return p
}

func (p *publisher) send(tr *webrtc.TrackLocalStaticRTP, label string) {
	defer p.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := uint16(1000); ; seq++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960, Marker: true},
			Payload: payloadFor(label, seq)}
		_ = tr.WriteRTP(pkt) // nothing to do about a failed write but send the next
	}
}

func (p *publisher) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// trackStats is what one subscriber received on one forwarded track.
type trackStats struct {
	from, kind string
	packets    int
	last       uint16
	gaps       int // packets whose sequence number did not follow the last
	corrupt    int // packets whose payload was not what was sent
	padding    int // padding-only packets: the server's bandwidth probes
	sent       int // the publisher's number in the last payload
	first      time.Time
	lastAt     time.Time // when the last packet arrived
	ended      bool
}

// receiver records every track forwarded to one client.
type receiver struct {
	mu     sync.Mutex             // guards tracks
	tracks map[string]*trackStats // by publisher id and kind
	wg     sync.WaitGroup
}

// receive reads every track c is given until c closes.
func receive(t *testing.T, c *client.Client) *receiver {
	t.Helper()
	r := &receiver{tracks: make(map[string]*trackStats)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			select {
			case rt := <-c.Tracks():
				r.wg.Add(1)
				go r.read(rt)
			case <-c.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close(); r.wg.Wait() })
	return r
}

func (r *receiver) read(rt *client.RemoteTrack) {
	defer r.wg.Done()
	st := &trackStats{from: rt.ParticipantID, kind: rt.Track.Kind().String()}
	r.mu.Lock()
	r.tracks[st.from+"/"+st.kind] = st
	r.mu.Unlock()
	for {
		pkt, _, err := rt.Track.ReadRTP()
		r.mu.Lock()
		if err != nil {
			st.ended = true
			r.mu.Unlock()
			return
		}
		r.record(st, pkt)
		r.mu.Unlock()
	}
}

// record counts one packet; the caller holds r.mu.
func (r *receiver) record(st *trackStats, pkt *rtp.Packet) {
	if st.packets+st.padding == 0 {
		st.first = time.Now()
	} else if pkt.SequenceNumber != st.last+1 {
		st.gaps++
	}
	st.last = pkt.SequenceNumber
	if pkt.Padding && len(pkt.Payload) == 0 {
		// A probe of the subscriber's bandwidth takes sequence numbers
		// of the stream: no gap, and no media.
		st.padding++
		return
	}
	// The payload names the publisher's sequence number: it must be the
	// next one sent, intact, whatever the server's rewriting did to the
	// header's.
	sent := -1
	if _, err := fmt.Sscanf(string(pkt.Payload), st.kind+"#%05d#", &sent); err != nil ||
		(st.packets > 0 && uint16(sent) != uint16(st.sent+1)) ||
		!bytes.Equal(pkt.Payload, payloadFor(st.kind, uint16(sent))) {
		st.corrupt++
	}
	st.sent = sent
	st.packets++
	st.lastAt = time.Now()
}

// stats returns a copy of the stats of the track of that publisher and
// kind, and whether there is one.
func (r *receiver) stats(from, kind string) (trackStats, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.tracks[from+"/"+kind]
	if !ok {
		return trackStats{}, false
	}
	return *st, true
}

func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}
