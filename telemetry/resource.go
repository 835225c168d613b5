package telemetry

import (
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// DefaultVersion is the service.version of a binary built without
// -ldflags "-X main.version=...".
const DefaultVersion = "dev"

// labelKeys are the resource attributes promoted to labels on every series
// of the Prometheus exposition (service_name, service_version,
// service_instance_id, cloud_region), beside target_info which carries all
// of them. They are one value per process, so they add no cardinality, and
// an alert or a dashboard can group by them without joining target_info.
var labelKeys = []attribute.Key{
	semconv.ServiceNameKey,
	semconv.ServiceVersionKey,
	semconv.ServiceInstanceIDKey,
	semconv.CloudRegionKey,
}

// promoted reports whether a resource attribute becomes a label.
func promoted(kv attribute.KeyValue) bool {
	for _, k := range labelKeys {
		if kv.Key == k {
			return true
		}
	}
	return false
}

// newResource describes this instance: service.name, service.version,
// service.instance.id (the Fly machine id, else the hostname), cloud.region
// when known, and the SDK's own telemetry.sdk.* attributes. Operator
// attributes from OTEL_RESOURCE_ATTRIBUTES come on top, but never replace
// the service's name and version.
func newResource(cfg Config, opts Options) (*resource.Resource, error) {
	version := opts.Version
	if version == "" {
		version = DefaultVersion
	}
	instance := cfg.InstanceID
	if instance == "" {
		instance = opts.Hostname
	}
	base := []attribute.KeyValue{semconv.ServiceInstanceID(instance)}
	if cfg.Region != "" {
		base = append(base, semconv.CloudRegion(cfg.Region))
	}
	extra, err := parseResourceAttributes(cfg.ResourceAttributes)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	attrs := append(base, extra...) // later keys win in a resource
	attrs = append(attrs, semconv.ServiceName(ServiceName), semconv.ServiceVersion(version))
	return resource.Merge(
		resource.NewWithAttributes(semconv.SchemaURL, semconv.TelemetrySDKName("opentelemetry"),
			semconv.TelemetrySDKLanguageGo),
		resource.NewWithAttributes(semconv.SchemaURL, attrs...),
	)
}

// parseResourceAttributes reads the OTEL_RESOURCE_ATTRIBUTES format:
// comma-separated key=value pairs, values percent-encoded.
func parseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var kvs []attribute.KeyValue
	for pair := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("want key=value, got %q", pair)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("value of %s: %w", k, err)
		}
		kvs = append(kvs, attribute.String(k, val))
	}
	return kvs, nil
}
