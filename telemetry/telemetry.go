// Package telemetry builds the service's single OpenTelemetry MeterProvider,
// its readers (a Prometheus exporter on a dedicated registry, and an OTLP
// push reader when configured) and the goroutine-leak detector.
//
// Other packages never reach for a global provider: they are handed a
// metric.Meter from Provider.Meter and create their instruments once, as
// struct fields.
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
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// ServiceName is the service.name resource attribute and the prefix of
// every metric name in Prometheus ("media_...").
const ServiceName = "media-service"

// Provider owns the MeterProvider and the Prometheus registry it exports to.
// It is safe for concurrent use. Shutdown flushes every push reader once;
// after it, instruments record nothing.
type Provider struct {
	mp       *sdkmetric.MeterProvider
	registry *prometheus.Registry
	log      *slog.Logger
}

// New builds the provider. The Prometheus registry is private to the
// provider (never the global default registry), with the standard process
// and Go runtime collectors registered beside the OTel exporter.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: register process collector: %w", err)
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("telemetry: register go collector: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	return &Provider{mp: mp, registry: reg, log: log}, nil
}

// Meter returns the meter other packages create their instruments from.
func (p *Provider) Meter(name string) metric.Meter { return p.mp.Meter(name) }

// Handler serves the Prometheus text exposition of the provider's registry.
func (p *Provider) Handler() http.Handler {
	return promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{Registry: p.registry})
}

// Shutdown flushes every push reader one last time and stops the provider.
// It is called after every session has closed, so the last push carries
// the final counts.
func (p *Provider) Shutdown(ctx context.Context) error {
	if err := p.mp.Shutdown(ctx); err != nil && !errors.Is(err, sdkmetric.ErrReaderShutdown) {
		return fmt.Errorf("telemetry: shutdown meter provider: %w", err)
	}
	return nil
}
