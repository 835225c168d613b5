package fleet_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/internal/redistest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// testTTL is the lease TTL of the tests' fleets: short, so a lapse is
// seen quickly, yet three renewals long on a loaded machine.
const testTTL = 2 * time.Second

// waitFor bounds every poll of the tests: far above what a pass takes.
const waitFor = 20 * time.Second

// backend is one Store implementation under the contract tests.
type backend struct {
	name string
	// start gives a test a fresh, empty backend: open returns a store on
	// it for one instance (a client of its own for Redis, the shared map
	// for memory); srv is the Redis server, nil for memory.
	start func(t *testing.T) (open func(t *testing.T) fleet.Store, srv *redistest.Server)
}

var backends = []backend{
	{"memory", func(t *testing.T) (func(*testing.T) fleet.Store, *redistest.Server) {
		s := fleet.NewMemoryStore()
		return func(*testing.T) fleet.Store { return s }, nil
	}},
	{"redis", func(t *testing.T) (func(*testing.T) fleet.Store, *redistest.Server) {
		srv := redistest.Start(t)
		return func(t *testing.T) fleet.Store {
			t.Helper()
			s, err := fleet.NewRedisStore(t.Context(), srv.URL())
			if err != nil {
				t.Fatalf("NewRedisStore(%s): %v", srv.URL(), err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}, srv
	}},
}

// forEachBackend runs test as a subtest on each backend.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

// member is one running Fleet of a test.
type member struct {
	*fleet.Fleet
	store  fleet.Store
	reader *sdkmetric.ManualReader // the Fleet's metrics
	stop   func()                  // ends Run (without Close); idempotent
}

// testLog writes to the test's output only with -v.
func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("test", t.Name())
	}
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}

// join starts a Fleet for instance id in region on store, runs it, and
// waits until it is registered. It is stopped and closed when the test
// ends.
func join(t *testing.T, store fleet.Store, id, region string, load fleet.Load) *member {
	t.Helper()
	return joinTTL(t, store, id, region, load, testTTL)
}

// joinTTL is join with a lease TTL of ttl.
func joinTTL(t *testing.T, store fleet.Store, id, region string, load fleet.Load, ttl time.Duration) *member {
	t.Helper()
	cfg := fleet.Config{PublicURL: "http://" + id + ".test", Region: region, LeaseTTL: ttl}
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { provider.Shutdown(context.Background()) })
	f, err := fleet.New(cfg, cfg.Instance(id), store, testLog(t), provider.Meter("test"))
	if err != nil {
		t.Fatalf("fleet.New(%s): %v", id, err)
	}
	f.SetLoad(load)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.Run(ctx) })
	var once sync.Once
	m := &member{Fleet: f, store: store, reader: reader, stop: func() { once.Do(func() { cancel(); wg.Wait() }) }}
	t.Cleanup(func() { m.stop(); f.Close() })
	eventually(t, fmt.Sprintf("%s registered", id), func() bool {
		_, ok, err := store.Instance(t.Context(), id)
		return err == nil && ok
	})
	return m
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", waitFor, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the sum of the data points of the named instrument
// whose attributes include attrs (key, value pairs), and whether there was
// any: a counter's or gauge's value, a histogram's count.
func (m *member) metric(t *testing.T, name string, attrs ...string) (float64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(t.Context(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	var sum float64
	found := false
	match := func(set interface {
		Value(attribute.Key) (attribute.Value, bool)
	}) bool {
		for i := 0; i+1 < len(attrs); i += 2 {
			v, ok := set.Value(attribute.Key(attrs[i]))
			if !ok || v.String() != attrs[i+1] {
				return false
			}
		}
		return true
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != name {
				continue
			}
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if match(&p.Attributes) {
						sum, found = sum+float64(p.Value), true
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if match(&p.Attributes) {
						sum, found = sum+float64(p.Value), true
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if match(&p.Attributes) {
						sum, found = sum+float64(p.Count), true
					}
				}
			}
		}
	}
	return sum, found
}

// waitLost waits for m to report room on Lost, failing the test if it
// reports another or none within waitFor.
func (m *member) waitLost(t *testing.T, room string) {
	t.Helper()
	select {
	case got := <-m.Lost():
		if got != room {
			t.Errorf("Lost() = %q; want %q", got, room)
		}
	case <-time.After(waitFor):
		t.Fatalf("%s did not report %s lost within %v", m.Self().ID, room, waitFor)
	}
}
