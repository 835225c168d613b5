package telemetry

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/media-service/media-service/internal/envconfig"
)

// Config configures the telemetry package. Field comments give each
// variable and its default; cmd/media-service fills it from the environment
// with env/v11 (only cmd reads the process environment), and New and
// NewLeakDetector validate it, naming the variable of a bad value.
//
// The OTEL_* fields follow the OpenTelemetry SDK environment specification,
// so an operator's collector set-up works unchanged. The OTLP exporter itself
// also honours the remaining standard variables it owns
// (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE,
// _CLIENT_CERTIFICATE/_KEY and their _METRICS_ forms, and
// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE).
type Config struct {
	// LogLevel is the least level of the JSON log on stdout
	// (MEDIA_LOG_LEVEL, default info; debug, info, warn or error). At
	// debug each subscriber connection's congestion control also logs its
	// trace (bandwidth_allocation: estimate, acknowledged rate, loss and
	// each video's layer) once a second and on every change, which is
	// what a pause or a resume is read against.
	LogLevel slog.Level `env:"MEDIA_LOG_LEVEL" envDefault:"info"`
	// LeakSampleInterval is how often the goroutine count is sampled
	// (MEDIA_LEAK_SAMPLE_INTERVAL, default 10s).
	LeakSampleInterval time.Duration `env:"MEDIA_LEAK_SAMPLE_INTERVAL" envDefault:"10s"`
	// LeakBaselineSample is the sample (1-based) at which the baseline is
	// fixed (MEDIA_LEAK_BASELINE_SAMPLE, default 30: about five minutes into
	// the process at the default interval, once start-up churn has settled).
	LeakBaselineSample int `env:"MEDIA_LEAK_BASELINE_SAMPLE" envDefault:"30"`
	// LeakFactor: a leak is suspected when the goroutines that active
	// sessions do not explain exceed LeakFactor times the baseline
	// (MEDIA_LEAK_FACTOR, default 3, the original service's rule).
	LeakFactor float64 `env:"MEDIA_LEAK_FACTOR" envDefault:"3"`
	// LeakSessionBudget is how many goroutines one session may account for
	// besides its tracks (MEDIA_LEAK_SESSION_BUDGET, default 70). A session
	// holds two PeerConnections (ICE, DTLS, SRTP, interceptor and
	// congestion-control goroutines), the publisher's SCTP association and
	// data channels, a WebSocket reader and writer and its keepalive.
	// Measured (cmd/media-service TestGoroutineBudgetsCoverSessions, both
	// connections up, data channels open): 48 with the ICE muxes bound to
	// one address, plus 6 for each further address a wildcard-bound mux
	// gathers candidates on (a UDP and a TCP candidate per connection);
	// 70 covers a host with up to four. Raise it on hosts with more.
	LeakSessionBudget int `env:"MEDIA_LEAK_SESSION_BUDGET" envDefault:"70"`
	// LeakTrackBudget is how many goroutines one forwarded track
	// (a publication or a subscription) may account for
	// (MEDIA_LEAK_TRACK_BUDGET, default 10). The same test measures about
	// 1 per plain track (the connection's loops serve all its tracks); the
	// default keeps headroom.
	LeakTrackBudget int `env:"MEDIA_LEAK_TRACK_BUDGET" envDefault:"10"`
	// LeakMinBaseline is the lowest baseline the detector uses
	// (MEDIA_LEAK_MIN_BASELINE, default 30, about what an idle instance
	// runs). It keeps an instance that was busy at its baseline sample, where
	// the session budget may explain away almost everything, from getting a
	// near-zero baseline that any idle moment later would exceed.
	LeakMinBaseline int `env:"MEDIA_LEAK_MIN_BASELINE" envDefault:"30"`

	// InstanceID is the service.instance.id resource attribute
	// (FLY_MACHINE_ID, set by Fly.io; default: the hostname cmd passes in
	// Options.Hostname).
	InstanceID string `env:"FLY_MACHINE_ID"`
	// Region is the cloud.region resource attribute (FLY_REGION, set by
	// Fly.io; default: none, the attribute is left out).
	Region string `env:"FLY_REGION"`
	// ResourceAttributes adds resource attributes, "key=value,key2=value2"
	// with percent-encoded values (OTEL_RESOURCE_ATTRIBUTES). They may set
	// or override service.instance.id and cloud.region (on platforms other
	// than Fly); service.name and service.version are always the service's.
	ResourceAttributes string `env:"OTEL_RESOURCE_ATTRIBUTES"`

	// OTLPEndpoint is the base URL of an OTLP/HTTP collector
	// (OTEL_EXPORTER_OTLP_ENDPOINT, default none); metrics go to
	// <endpoint>/v1/metrics. Setting it (or OTLPMetricsEndpoint) turns the
	// push reader on.
	OTLPEndpoint string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	// OTLPMetricsEndpoint is the full URL metrics are pushed to
	// (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, default none); it wins over
	// OTLPEndpoint.
	OTLPMetricsEndpoint string `env:"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"`
	// OTLPProtocol is the OTLP transport (OTEL_EXPORTER_OTLP_PROTOCOL,
	// default http/protobuf, the only one supported: a grpc setting stops
	// the start instead of pushing into the void).
	OTLPProtocol string `env:"OTEL_EXPORTER_OTLP_PROTOCOL"`
	// OTLPMetricsProtocol overrides OTLPProtocol for metrics
	// (OTEL_EXPORTER_OTLP_METRICS_PROTOCOL).
	OTLPMetricsProtocol string `env:"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"`
	// ExportInterval is the time between two OTLP pushes, in milliseconds
	// as the specification writes it (OTEL_METRIC_EXPORT_INTERVAL, default
	// 60000). Shutdown pushes once more, so a short-lived instance loses
	// nothing by a long interval.
	ExportInterval Millis `env:"OTEL_METRIC_EXPORT_INTERVAL" envDefault:"60000"`
	// ExportTimeout bounds one OTLP push, in milliseconds
	// (OTEL_METRIC_EXPORT_TIMEOUT, default 30000).
	ExportTimeout Millis `env:"OTEL_METRIC_EXPORT_TIMEOUT" envDefault:"30000"`
}

// Millis is a duration written as whole milliseconds, the unit the
// OpenTelemetry environment variables use (OTEL_METRIC_EXPORT_INTERVAL=60000).
type Millis time.Duration

// UnmarshalText parses a positive whole number of milliseconds.
func (m *Millis) UnmarshalText(b []byte) error {
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a positive number of milliseconds, got %q", b)
	}
	*m = Millis(time.Duration(n) * time.Millisecond)
	return nil
}

// Duration is m as a time.Duration.
func (m Millis) Duration() time.Duration { return time.Duration(m) }

// String is m as a duration ("1m0s"), for messages.
func (m Millis) String() string { return m.Duration().String() }

// Validate checks every value of c; an error names the variable of the
// first bad one. New calls it; cmd/media-service calls it first, so a bad
// value stops the start before anything is bound.
func (c Config) Validate() error {
	v := envconfig.Check("telemetry", &c)
	c.checkLeak(v)
	envconfig.Positive(v, &c.ExportInterval)
	envconfig.Positive(v, &c.ExportTimeout)
	if _, err := parseResourceAttributes(c.ResourceAttributes); err != nil {
		v.Failf(&c.ResourceAttributes, ": %w", err)
	}
	c.checkProtocol(v)
	if v.Err() != nil {
		return v.Err()
	}
	_, err := c.otlpURL()
	return err
}

// validateLeak checks the leak detector's part of c.
func (c Config) validateLeak() error {
	v := envconfig.Check("telemetry", &c)
	c.checkLeak(v)
	return v.Err()
}

func (c *Config) checkLeak(v *envconfig.Checker) {
	envconfig.Positive(v, &c.LeakSampleInterval)
	envconfig.AtLeast(v, &c.LeakBaselineSample, 1)
	if c.LeakFactor <= 1 {
		v.Failf(&c.LeakFactor, "must be above 1, got %g", c.LeakFactor)
	}
	envconfig.NotNegative(v, &c.LeakSessionBudget)
	envconfig.NotNegative(v, &c.LeakTrackBudget)
	envconfig.AtLeast(v, &c.LeakMinBaseline, 1)
}

// checkProtocol accepts only OTLP over HTTP with protobuf, the transport
// this binary carries; the metrics-specific variable wins.
func (c *Config) checkProtocol(v *envconfig.Checker) {
	field, proto := &c.OTLPProtocol, c.OTLPProtocol
	if c.OTLPMetricsProtocol != "" {
		field, proto = &c.OTLPMetricsProtocol, c.OTLPMetricsProtocol
	}
	if proto != "" && proto != "http/protobuf" {
		v.Failf(field, "=%q is not supported: media-service pushes OTLP as http/protobuf only", proto)
	}
}

// otlpURL is where metrics are pushed, or "" when no push is configured.
// As the specification says, the signal-specific endpoint is used as it
// is, while the generic one gets "v1/metrics" appended to its path.
func (c Config) otlpURL() (string, error) {
	field, raw := &c.OTLPMetricsEndpoint, c.OTLPMetricsEndpoint
	if raw == "" {
		field, raw = &c.OTLPEndpoint, c.OTLPEndpoint
	}
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v := envconfig.Check("telemetry", &c)
		v.Failf(field, "must be an http:// or https:// URL, got %q", raw)
		return "", v.Err()
	}
	if c.OTLPMetricsEndpoint == "" {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/metrics"
	}
	return u.String(), nil
}
