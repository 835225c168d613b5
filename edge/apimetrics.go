package edge

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Server API metrics (docs/API.md, "Metrics"): every request under
// /api/v1, by route and answer, and how long it took. The route is one of
// a fixed set of names, never the request's path (which holds room and
// identity names); the status comes from the handful the API answers.

// Route names of the server API: the values of the route attribute.
const (
	apiListRooms         = "list_rooms"
	apiCloseRoom         = "close_room"
	apiListParticipants  = "list_participants"
	apiGetParticipant    = "get_participant"
	apiRemoveParticipant = "remove_participant"
	apiUpdateParticipant = "update_participant"
	apiMuteTrack         = "mute_track"
	apiOther             = "other" // a path or method the API does not serve
)

// apiTimeBuckets cover an answer from memory (a millisecond) to a proxied
// one that waited for its owner's 10 s timeout.
var apiTimeBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// apiMetrics are the server API's instruments.
type apiMetrics struct {
	requests metric.Int64Counter     // media_api_requests_total{route,code,forwarded}
	duration metric.Float64Histogram // media_api_request_duration_seconds{route,forwarded}
}

func newAPIMetrics(m metric.Meter) (*apiMetrics, error) {
	requests, err1 := m.Int64Counter("media_api_requests",
		metric.WithDescription("Server API requests by route, HTTP status code, and forwarded (true when a sibling instance proxied it here)."))
	duration, err2 := m.Float64Histogram("media_api_request_duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(apiTimeBuckets...),
		metric.WithDescription("Server API requests from arrival to answer, by route and forwarded; a proxied request counts its owner's time too."))
	if err1 != nil {
		return nil, err1
	}
	if err2 != nil {
		return nil, err2
	}
	a := &apiMetrics{requests: requests, duration: duration}
	// Each route's success exists from the start, so the series are in the
	// scrape (and the dashboard's queries answer) before the first request.
	for route, code := range map[string]int{
		apiListRooms: 200, apiCloseRoom: 204, apiListParticipants: 200, apiGetParticipant: 200,
		apiRemoveParticipant: 204, apiUpdateParticipant: 200, apiMuteTrack: 200,
	} {
		a.requests.Add(bg, 0, metric.WithAttributes(attribute.String("route", route),
			attribute.String("code", strconv.Itoa(code)), attribute.Bool("forwarded", false)))
	}
	return a, nil
}

// measure is the first middleware of /api/v1: it counts and times each
// request once its answer is written. An error a handler or middleware
// returns is answered here (as Echo would after us), so its status is
// the one counted.
func (a *apiMetrics) measure(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		forwarded := attribute.Bool("forwarded", c.Request().Header.Get(forwardedHeader) != "")
		route := attribute.String("route", apiRoute(c.Request().Method, c.Path()))
		a.requests.Add(bg, 1, metric.WithAttributes(route, attribute.String("code", strconv.Itoa(c.Response().Status)), forwarded))
		a.duration.Record(bg, time.Since(start).Seconds(), metric.WithAttributes(route, forwarded))
		return nil
	}
}

// apiRoute names the route Echo matched (path is its pattern).
func apiRoute(method, path string) string {
	const room, participant = "/api/v1/rooms/:room", "/api/v1/rooms/:room/participants/:identity"
	switch method + " " + path {
	case http.MethodGet + " /api/v1/rooms":
		return apiListRooms
	case http.MethodDelete + " " + room:
		return apiCloseRoom
	case http.MethodGet + " " + room + "/participants":
		return apiListParticipants
	case http.MethodGet + " " + participant:
		return apiGetParticipant
	case http.MethodDelete + " " + participant:
		return apiRemoveParticipant
	case http.MethodPatch + " " + participant:
		return apiUpdateParticipant
	case http.MethodPost + " " + participant + "/tracks/:track/mute":
		return apiMuteTrack
	}
	return apiOther
}
