package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestConfigErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		environ map[string]string
		want    string
	}{
		{map[string]string{"MEDIA_LEAK_SAMPLE_INTERVAL": "0s"}, "MEDIA_LEAK_SAMPLE_INTERVAL"},
		{map[string]string{"MEDIA_LEAK_BASELINE_SAMPLE": "0"}, "MEDIA_LEAK_BASELINE_SAMPLE"},
		{map[string]string{"MEDIA_LEAK_FACTOR": "1"}, "MEDIA_LEAK_FACTOR"},
		{map[string]string{"MEDIA_LEAK_SESSION_BUDGET": "-1"}, "MEDIA_LEAK_SESSION_BUDGET"},
		{map[string]string{"MEDIA_LEAK_TRACK_BUDGET": "-1"}, "MEDIA_LEAK_TRACK_BUDGET"},
		{map[string]string{"MEDIA_LEAK_MIN_BASELINE": "0"}, "MEDIA_LEAK_MIN_BASELINE"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://c/v1/metrics"}, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment"}, "OTEL_RESOURCE_ATTRIBUTES"},
	}
	for _, tt := range tests {
		cfg := defaultConfig(t, tt.environ)
		_, err := New(t.Context(), cfg, Options{Log: discardLog()})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%v) = %v; want an error naming %s", tt.environ, err, tt.want)
		}
	}
}

func TestExportIntervalIsMilliseconds(t *testing.T) {
	cfg := defaultConfig(t, map[string]string{"OTEL_METRIC_EXPORT_INTERVAL": "1500"})
	if got := cfg.ExportInterval.Duration(); got != 1500*time.Millisecond {
		t.Errorf("OTEL_METRIC_EXPORT_INTERVAL=1500 gives %s; want 1.5s", got)
	}
	if got := defaultConfig(t, nil).ExportInterval.Duration(); got != time.Minute {
		t.Errorf("default export interval = %s; want 1m0s", got)
	}
	var c Config
	err := env.ParseWithOptions(&c, env.Options{Environment: map[string]string{"OTEL_METRIC_EXPORT_INTERVAL": "10s"}})
	if err == nil {
		t.Error("OTEL_METRIC_EXPORT_INTERVAL=10s parsed; want an error (the variable is in milliseconds)")
	}
}

func TestOTLPURL(t *testing.T) {
	tests := []struct {
		endpoint, metricsEndpoint, want string
	}{
		{"", "", ""},
		{"http://collector:4318", "", "http://collector:4318/v1/metrics"},
		{"https://collector:4318/", "", "https://collector:4318/v1/metrics"},
		{"http://collector:4318/otlp", "", "http://collector:4318/otlp/v1/metrics"},
		{"http://ignored:4318", "http://collector:9000/custom", "http://collector:9000/custom"},
	}
	for _, tt := range tests {
		c := Config{OTLPEndpoint: tt.endpoint, OTLPMetricsEndpoint: tt.metricsEndpoint}
		got, err := c.otlpURL()
		if err != nil || got != tt.want {
			t.Errorf("otlpURL(endpoint %q, metrics endpoint %q) = %q, %v; want %q", tt.endpoint, tt.metricsEndpoint, got, err, tt.want)
		}
	}
}

func TestResource(t *testing.T) {
	tests := []struct {
		name    string
		environ map[string]string
		opts    Options
		want    map[string]string
	}{
		{
			name: "plain container: hostname, default version, no region",
			opts: Options{Hostname: "box-1"},
			want: map[string]string{"service.name": "media-service", "service.version": "dev", "service.instance.id": "box-1", "cloud.region": ""},
		},
		{
			name:    "fly: machine id and region",
			environ: map[string]string{"FLY_MACHINE_ID": "e784079b", "FLY_REGION": "ams"},
			opts:    Options{Hostname: "box-1", Version: "v1.2.3"},
			want:    map[string]string{"service.version": "v1.2.3", "service.instance.id": "e784079b", "cloud.region": "ams"},
		},
		{
			name:    "OTEL_RESOURCE_ATTRIBUTES adds and overrides, but not the service name or version",
			environ: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "cloud.region=eu-west%2C1,service.name=other,service.version=x,deployment.environment=prod"},
			opts:    Options{Hostname: "box-1", Version: "v2"},
			want:    map[string]string{"service.name": "media-service", "service.version": "v2", "cloud.region": "eu-west,1", "deployment.environment": "prod"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := newResource(defaultConfig(t, tt.environ), tt.opts)
			if err != nil {
				t.Fatalf("newResource: %v", err)
			}
			for k, want := range tt.want {
				got, _ := res.Set().Value(attribute.Key(k))
				if got.String() != want {
					t.Errorf("resource %s = %q; want %q", k, got.String(), want)
				}
			}
		})
	}
}

// scrape fetches the handler over a real socket and parses the exposition.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// gaugeValue is the value of the family's only series, with its labels.
func gaugeValue(t *testing.T, fams map[string]*dto.MetricFamily, name string) (float64, map[string]string) {
	t.Helper()
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) != 1 {
		t.Fatalf("scrape has no single series %s", name)
	}
	m := f.GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	return m.GetGauge().GetValue(), labels
}

// TestHandlerServesLeakGauges feeds the detector synthetic samples that end
// in a suspected leak and reads the gauges back from a Prometheus scrape of
// the provider's handler, names exact, identity labels on every series.
func TestHandlerServesLeakGauges(t *testing.T) {
	cfg := defaultConfig(t, map[string]string{"FLY_REGION": "ams", "FLY_MACHINE_ID": "m1"})
	p, err := New(t.Context(), cfg, Options{Log: discardLog(), Version: "v9"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer p.Shutdown(context.Background())
	d, err := NewLeakDetector(cfg, p.Meter("test"), func() Load { return Load{} })
	if err != nil {
		t.Fatalf("NewLeakDetector: %v", err)
	}
	d.count = func() int { return 420 }
	for range 30 {
		d.state.observe(50, Load{})
	}
	d.state.observe(500, Load{})
	fams := scrape(t, p.Handler())
	want := map[string]float64{
		"media_goroutine_count":          420,
		"media_goroutine_count_max":      500,
		"media_potential_goroutine_leak": 1,
		"media_goroutine_leak_baseline":  50,
		"media_goroutine_unexplained":    500,
	}
	for name, w := range want {
		got, labels := gaugeValue(t, fams, name)
		if got != w {
			t.Errorf("scraped %s = %g; want %g", name, got, w)
		}
		if fams[name].GetType() != dto.MetricType_GAUGE {
			t.Errorf("%s has type %s; want gauge", name, fams[name].GetType())
		}
		wantLabels := map[string]string{"service_name": "media-service", "service_version": "v9", "service_instance_id": "m1", "cloud_region": "ams"}
		for k, v := range wantLabels {
			if labels[k] != v {
				t.Errorf("%s label %s = %q; want %q", name, k, labels[k], v)
			}
		}
	}
	for _, name := range []string{"process_cpu_seconds_total", "go_goroutines", "target_info"} {
		if _, labels := gaugeOrCounter(t, fams, name); labels["service_instance_id"] != "m1" {
			t.Errorf("%s label service_instance_id = %q; want m1", name, labels["service_instance_id"])
		}
	}
}

func gaugeOrCounter(t *testing.T, fams map[string]*dto.MetricFamily, name string) (*dto.Metric, map[string]string) {
	t.Helper()
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) == 0 {
		t.Fatalf("scrape has no %s", name)
	}
	labels := map[string]string{}
	for _, l := range f.GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	return f.GetMetric()[0], labels
}

// TestShutdownPushesFinalCounts sets an export interval far longer than the
// test, so the only push that can carry the counter is Shutdown's own.
func TestShutdownPushesFinalCounts(t *testing.T) {
	rcv := NewOTLPReceiver(t)
	cfg := defaultConfig(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL(),
		"OTEL_METRIC_EXPORT_INTERVAL": "3600000",
		"FLY_MACHINE_ID":              "m2",
	})
	p, err := New(t.Context(), cfg, Options{Log: discardLog(), Version: "v3"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c, err := p.Meter("test").Int64Counter("media_test_events", metric.WithDescription("test"))
	if err != nil {
		t.Fatalf("Int64Counter: %v", err)
	}
	c.Add(t.Context(), 4)
	c.Add(t.Context(), 3, metric.WithAttributes(attribute.String("reason", "x")))
	if n := len(rcv.Pushes()); n != 0 {
		t.Fatalf("pushes before Shutdown = %d; want 0", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown = %v; want nil (idempotent)", err)
	}
	pushes := rcv.Pushes()
	if len(pushes) != 1 {
		t.Fatalf("pushes after Shutdown = %d; want 1", len(pushes))
	}
	if got, ok := PushedValue(pushes[0], "media_test_events"); !ok || got != 7 {
		t.Errorf("final push media_test_events = %g (present %v); want 7", got, ok)
	}
	res := PushedResource(pushes[0])
	for k, want := range map[string]string{"service.name": "media-service", "service.version": "v3", "service.instance.id": "m2"} {
		if res[k] != want {
			t.Errorf("pushed resource %s = %q; want %q", k, res[k], want)
		}
	}
}

// TestPeriodicPush checks the interval variable drives pushes while the
// instance runs, not only at Shutdown.
func TestPeriodicPush(t *testing.T) {
	rcv := NewOTLPReceiver(t)
	cfg := defaultConfig(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL(), "OTEL_METRIC_EXPORT_INTERVAL": "50"})
	p, err := New(t.Context(), cfg, Options{Log: discardLog()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer p.Shutdown(context.Background())
	if _, err := NewLeakDetector(cfg, p.Meter("test"), func() Load { return Load{} }); err != nil {
		t.Fatalf("NewLeakDetector: %v", err)
	}
	select {
	case <-rcv.Pushed():
	case <-time.After(10 * time.Second):
		t.Fatal("no push within 10s at a 50ms interval")
	}
	if _, ok := PushedValue(rcv.Pushes()[0], "media_goroutine_count"); !ok {
		t.Error("periodic push has no media_goroutine_count")
	}
}

// TestInstanceGauges reads the instance gauges back from a scrape: the
// drain flag follows Draining, and both limits are the configured values,
// a connection bound that is off included (0, not a missing series).
func TestInstanceGauges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxConns int
	}{
		{"connection bound on", 4096},
		{"connection bound off", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(t.Context(), defaultConfig(t, nil), Options{Log: discardLog()})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer p.Shutdown(context.Background())
			var draining atomic.Bool
			st := InstanceState{Draining: draining.Load, MaxSessions: 500, MaxConns: tc.maxConns}
			if err := RegisterInstance(p.Meter("test"), st); err != nil {
				t.Fatalf("RegisterInstance: %v", err)
			}
			for _, want := range []float64{0, 1} {
				draining.Store(want == 1)
				checkInstanceGauges(t, scrape(t, p.Handler()), map[string]float64{
					"media_draining":         want,
					"media_sessions_limit":   500,
					"media_http_conns_limit": float64(tc.maxConns),
				})
			}
		})
	}
}

func TestRegisterInstanceRequiresDraining(t *testing.T) {
	p, err := New(t.Context(), defaultConfig(t, nil), Options{Log: discardLog()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer p.Shutdown(context.Background())
	if err := RegisterInstance(p.Meter("test"), InstanceState{MaxConns: 4096}); err == nil {
		t.Error("RegisterInstance without Draining = nil; want an error")
	}
}

func checkInstanceGauges(t *testing.T, fams map[string]*dto.MetricFamily, want map[string]float64) {
	t.Helper()
	for name, w := range want {
		if got, _ := gaugeValue(t, fams, name); got != w {
			t.Errorf("scraped %s = %g; want %g", name, got, w)
		}
	}
}
