package telemetry

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// OTLPReceiver is an OTLP/HTTP metrics endpoint on 127.0.0.1 for tests, the
// part of an OpenTelemetry collector the service talks to: it decodes every
// protobuf push to /v1/metrics and keeps them in arrival order. It is
// exported for the binary-level tests in package telemetry_test.
type OTLPReceiver struct {
	srv    *httptest.Server
	pushed chan struct{} // receives (without blocking) after each push

	mu     sync.Mutex // guards pushes
	pushes []*colmetrics.ExportMetricsServiceRequest
}

// NewOTLPReceiver starts a receiver that is closed when the test ends.
func NewOTLPReceiver(t *testing.T) *OTLPReceiver {
	t.Helper()
	r := &OTLPReceiver{pushed: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/metrics", r.handle)
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the receiver's base URL, what OTEL_EXPORTER_OTLP_ENDPOINT holds.
func (r *OTLPReceiver) URL() string { return r.srv.URL }

// Pushed receives after each push.
func (r *OTLPReceiver) Pushed() <-chan struct{} { return r.pushed }

// Pushes returns the pushes received so far, oldest first.
func (r *OTLPReceiver) Pushes() []*colmetrics.ExportMetricsServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*colmetrics.ExportMetricsServiceRequest(nil), r.pushes...)
}

func (r *OTLPReceiver) handle(w http.ResponseWriter, req *http.Request) {
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var m colmetrics.ExportMetricsServiceRequest
	if err := proto.Unmarshal(b, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.pushes = append(r.pushes, &m)
	r.mu.Unlock()
	select {
	case r.pushed <- struct{}{}:
	default:
	}
	out, _ := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// PushedValue is the value of the named sum or gauge in one push, summed
// over the data points whose attributes include every key=value pair of
// match (all of them when match is empty), and whether it was there.
func PushedValue(m *colmetrics.ExportMetricsServiceRequest, name string, match ...string) (float64, bool) {
	var total float64
	found := false
	for _, rm := range m.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, mt := range sm.GetMetrics() {
				if mt.GetName() != name {
					continue
				}
				found = true
				total += sumPoints(mt, match)
			}
		}
	}
	return total, found
}

func sumPoints(mt *metricspb.Metric, match []string) float64 {
	points := mt.GetSum().GetDataPoints()
	if mt.GetGauge() != nil {
		points = mt.GetGauge().GetDataPoints()
	}
	var total float64
	for _, p := range points {
		if !hasAttrs(p, match) {
			continue
		}
		if _, ok := p.GetValue().(*metricspb.NumberDataPoint_AsInt); ok {
			total += float64(p.GetAsInt())
		} else {
			total += p.GetAsDouble()
		}
	}
	return total
}

// PushedResource is the resource of the push's first resource-metrics
// entry as string attributes.
func PushedResource(m *colmetrics.ExportMetricsServiceRequest) map[string]string {
	attrs := map[string]string{}
	if rms := m.GetResourceMetrics(); len(rms) > 0 {
		for _, kv := range rms[0].GetResource().GetAttributes() {
			attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
	}
	return attrs
}

// hasAttrs reports whether p carries every key=value pair of match.
func hasAttrs(p *metricspb.NumberDataPoint, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		found := false
		for _, kv := range p.GetAttributes() {
			if kv.GetKey() == match[i] && kv.GetValue().GetStringValue() == match[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
