// Package telemetry builds the service's single OpenTelemetry MeterProvider,
// its readers (a Prometheus exporter on a dedicated registry, and an OTLP
// push reader when configured) and the goroutine-leak detector. The ops kit
// beside the code (alerts.yml, dashboard.json, RUNBOOK.md) is written
// against the metric names this provider exposes.
//
// Other packages never reach for a global provider: they are handed a
// metric.Meter from Provider.Meter and create their instruments once, as
// struct fields.
//
// # Names in Prometheus
//
// Instrument names start with "media_". The exporter keeps the Prometheus
// conventions: counters get "_total", and a unit adds its suffix ("s" gives
// "_seconds", "By" gives "_bytes"); instruments without a unit, like the three
// goroutine gauges, keep their names exactly.
//
// # Resource attributes
//
// Every series carries the instance's identity as labels: service_name,
// service_version, service_instance_id and, when known, cloud_region (the
// process_* and go_* series too). target_info carries the full resource as
// well, for joins in the usual OpenTelemetry way. OTLP pushes carry the same
// resource.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// ServiceName is the service.name resource attribute. Metric names carry
// the shorter "media_" prefix.
const ServiceName = "media-service"

// Options carries what the provider is handed rather than configured with.
type Options struct {
	// Log receives the provider's own events. Required.
	Log *slog.Logger
	// Version is service.version, set in cmd with -ldflags. Default "dev".
	Version string
	// Hostname is service.instance.id when Config.InstanceID is empty;
	// cmd passes os.Hostname().
	Hostname string
}

// Provider owns the MeterProvider and the Prometheus registry it exports to.
// It is safe for concurrent use. Shutdown pushes the last interval once;
// after it, instruments record nothing.
type Provider struct {
	mp       *sdkmetric.MeterProvider
	registry *prometheus.Registry
	log      *slog.Logger
}

// New builds the provider with its readers. The Prometheus registry is
// private to the provider (never the global default registry), with the
// standard process and Go runtime collectors registered beside the OTel
// exporter. When an OTLP endpoint is configured, a periodic reader pushes
// to it over HTTP as well.
func New(ctx context.Context, cfg Config, opts Options) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		return nil, errors.New("telemetry: Options.Log is required")
	}
	res, err := newResource(cfg, opts)
	if err != nil {
		return nil, err
	}
	reg, prom, err := newPrometheus(res)
	if err != nil {
		return nil, err
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	push, err := newPushReader(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if push != nil {
		mpOpts = append(mpOpts, sdkmetric.WithReader(push))
		u, _ := cfg.otlpURL()
		opts.Log.Info("otlp_push_enabled", "endpoint", u, "interval", cfg.ExportInterval.Duration().String())
	}
	return &Provider{mp: sdkmetric.NewMeterProvider(mpOpts...), registry: reg, log: opts.Log}, nil
}

// newPrometheus builds the dedicated registry and the exporter reading into
// it. The process and Go collectors get the same identity labels the
// exporter promotes from the resource, so every series on /metrics has them.
func newPrometheus(res *resource.Resource) (*prometheus.Registry, *otelprom.Exporter, error) {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{}
	for _, kv := range res.Attributes() {
		if promoted(kv) {
			labels[labelName(kv.Key)] = kv.Value.String()
		}
	}
	wrapped := prometheus.WrapRegistererWith(labels, reg)
	if err := wrapped.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register process collector: %w", err)
	}
	if err := wrapped.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register go collector: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(),
		otelprom.WithResourceAsConstantLabels(promoted))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	return reg, exp, nil
}

// labelName is the Prometheus label a promoted resource attribute becomes,
// the same name the exporter gives it ("service.instance.id" becomes
// "service_instance_id").
func labelName(k attribute.Key) string {
	b := []byte(k)
	for i, c := range b {
		if c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

// newPushReader is the OTLP/HTTP periodic reader, or nil when no endpoint
// is configured. The URL comes from cfg; the exporter reads the other
// standard OTEL_EXPORTER_OTLP_* settings (headers, TLS, compression,
// timeout, temporality) itself.
func newPushReader(ctx context.Context, cfg Config) (sdkmetric.Reader, error) {
	u, err := cfg.otlpURL()
	if err != nil || u == "" {
		return nil, err
	}
	exp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(u))
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp exporter for %s: %w", u, err)
	}
	return sdkmetric.NewPeriodicReader(exp,
		sdkmetric.WithInterval(cfg.ExportInterval.Duration()),
		sdkmetric.WithTimeout(cfg.ExportTimeout.Duration())), nil
}

// Meter returns the meter other packages create their instruments from.
func (p *Provider) Meter(name string) metric.Meter { return p.mp.Meter(name) }

// Handler serves the Prometheus text exposition of the provider's registry.
func (p *Provider) Handler() http.Handler {
	return promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{Registry: p.registry})
}

// Shutdown pushes the last interval to the OTLP collector, if any, and
// stops the provider. cmd calls it after every session has closed, so the
// last push carries the final counts. It is idempotent.
func (p *Provider) Shutdown(ctx context.Context) error {
	if err := p.mp.Shutdown(ctx); err != nil && !errors.Is(err, sdkmetric.ErrReaderShutdown) {
		return fmt.Errorf("telemetry: shutdown meter provider: %w", err)
	}
	return nil
}
