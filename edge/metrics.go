package edge

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/connlimit"
)

// metrics are the instance's signaling and session instruments. Attribute
// values come from fixed sets (join results, close reasons, error codes,
// refusal reasons): never a room, identity or address.
type metrics struct {
	sessions      metric.Int64UpDownCounter // media_sessions_active
	rooms         metric.Int64UpDownCounter // media_rooms_active
	participants  metric.Int64UpDownCounter // media_participants_active
	joins         metric.Int64Counter       // media_joins_total{result}
	closed        metric.Int64Counter       // media_sessions_closed_total{reason}
	candidatesOut metric.Int64Counter       // media_ice_candidates_refused_total{reason}
	slow          metric.Int64Counter       // media_slow_client_disconnects_total
	signalErrors  metric.Int64Counter       // media_signal_errors_total{code}
	joinTime      metric.Float64Histogram   // media_join_duration_seconds{first}
	conns         metric.Int64UpDownCounter // media_http_conns_active
	connRefusals  metric.Int64Counter       // media_http_conn_refusals_total{reason}
	trackSettings metric.Int64Counter       // media_track_settings_total{quality,paused}
	layersSent    metric.Int64Counter       // media_dynacast_layers_messages_total
	data          *dataMetrics              // media_data_* (datachannel.go)
	api           *apiMetrics               // media_api_* (apimetrics.go)
	resumes       metric.Int64Counter       // media_resumes_total{result}
	iceRestarts   metric.Int64Counter       // media_ice_restarts_total{target}
	resumeMedia   metric.Float64Histogram   // media_resume_media_seconds
}

// bg is the context of measurements: they are never cancelled.
var bg = context.Background()

// joinTimeBuckets cover a good join (well under a second on a near
// network) up to a TURN fallback after a failed first attempt.
var joinTimeBuckets = []float64{0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20}

func newMetrics(m metric.Meter) (*metrics, error) {
	var errs []error
	upDown := func(name, desc string) metric.Int64UpDownCounter {
		c, err := m.Int64UpDownCounter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	x := &metrics{
		sessions:      upDown("media_sessions_active", "Signaling sessions open now."),
		rooms:         upDown("media_rooms_active", "Rooms with at least one participant now."),
		participants:  upDown("media_participants_active", "Participants in a room now."),
		joins:         counter("media_joins", "Join attempts on /v1/rtc by result (ok or the refusal)."),
		closed:        counter("media_sessions_closed", "Sessions ended, by reason."),
		candidatesOut: counter("media_ice_candidates_refused", "ICE candidates refused before the ICE agent, by reason."),
		slow:          counter("media_slow_client_disconnects", "Clients disconnected because their send queue stayed full."),
		signalErrors:  counter("media_signal_errors", "error messages sent to clients, by code."),
		conns:         upDown("media_http_conns_active", "TCP connections open now on the HTTP port (signaling, health, demo page), WebSockets included."),
		connRefusals:  counter("media_http_conn_refusals", "TCP connections to the HTTP port reset right after accept by a bound, by reason (per_ip, total)."),
		trackSettings: counter("media_track_settings", "track_settings requests applied, by quality (low, medium, high, or size when asked by max_width/max_height alone) and paused (true, false)."),
		layersSent:    counter("media_dynacast_layers_messages", "layers messages sent to publishers: dynacast changes of the layers a simulcast track must send."),
		resumes:       counter("media_resumes", "Session resumes after a lost WebSocket, by result (ok or the refusal)."),
		iceRestarts:   counter("media_ice_restarts", "ICE restarts, by target connection (publisher, subscriber)."),
	}
	var err error
	x.joinTime, err = m.Float64Histogram("media_join_duration",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(joinTimeBuckets...),
		metric.WithDescription("From WebSocket open until media first flows for the participant: "+
			"the first packet forwarded to it (first=forwarded) or, when that comes later, its own first track arriving (first=received)."))
	errs = append(errs, err)
	x.data, err = newDataMetrics(m)
	errs = append(errs, err)
	x.api, err = newAPIMetrics(m)
	errs = append(errs, err)
	x.resumeMedia, err = m.Float64Histogram("media_resume_media",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(joinTimeBuckets...),
		metric.WithDescription("From a session's resume until both its connections are up again (0 when media never stopped)."))
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("edge: metrics: %w", err)
		}
	}
	// The gauges and the attribute-free counters exist from the start, so
	// an idle instance shows 0 rather than no series at all.
	for _, g := range []metric.Int64UpDownCounter{x.sessions, x.rooms, x.participants, x.conns} {
		g.Add(bg, 0)
	}
	x.slow.Add(bg, 0)
	x.layersSent.Add(bg, 0)
	for _, reason := range connlimit.Reasons {
		x.connRefusals.Add(bg, 0, metric.WithAttributes(attribute.String("reason", string(reason))))
	}
	for _, result := range resumeResults {
		x.resumes.Add(bg, 0, metric.WithAttributes(attribute.String("result", result)))
	}
	for _, target := range []string{signal.TargetPublisher, signal.TargetSubscriber} {
		x.iceRestarts.Add(bg, 0, metric.WithAttributes(attribute.String("target", target)))
	}
	return x, nil
}

func (m *metrics) resumed(result string) {
	m.resumes.Add(bg, 1, metric.WithAttributes(attribute.String("result", result)))
}

func (m *metrics) iceRestart(target string) {
	m.iceRestarts.Add(bg, 1, metric.WithAttributes(attribute.String("target", target)))
}

func (m *metrics) join(result string) {
	m.joins.Add(bg, 1, metric.WithAttributes(attribute.String("result", result)))
}

func (m *metrics) sessionClosed(reason string) {
	m.closed.Add(bg, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

func (m *metrics) candidateRefused(reason string) {
	m.candidatesOut.Add(bg, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

func (m *metrics) signalError(code string) {
	m.signalErrors.Add(bg, 1, metric.WithAttributes(attribute.String("code", code)))
}

// trackSetting counts a track_settings request by its quality, or "size"
// when it asks by size alone.
func (m *metrics) trackSetting(req *signal.Message) {
	quality := req.Quality
	switch {
	case quality == "" && (req.MaxWidth > 0 || req.MaxHeight > 0):
		quality = "size"
	case quality == "":
		quality = signal.QualityHigh
	}
	m.trackSettings.Add(bg, 1, metric.WithAttributes(attribute.String("quality", quality), attribute.Bool("paused", req.Paused)))
}

func (m *metrics) connRefused(reason connlimit.Reason) {
	m.connRefusals.Add(bg, 1, metric.WithAttributes(attribute.String("reason", string(reason))))
}

func (m *metrics) joinDuration(d time.Duration, first string) {
	m.joinTime.Record(bg, d.Seconds(), metric.WithAttributes(attribute.String("first", first)))
}
