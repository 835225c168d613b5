package edge

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// apiRequests is media_api_requests_total's value for route and code,
// not forwarded.
func (ts *testServer) apiRequests(t *testing.T, route, code string) int64 {
	t.Helper()
	sum, _ := ts.metric(t, "media_api_requests").(metricdata.Sum[int64])
	var n int64
	for _, dp := range sum.DataPoints {
		if hasAttr(dp.Attributes, "route", route) && hasAttr(dp.Attributes, "code", code) && !hasBoolAttr(dp.Attributes, "forwarded") {
			n += dp.Value
		}
	}
	return n
}

// hasBoolAttr reports whether set has key=true.
func hasBoolAttr(set attribute.Set, key string) bool {
	v, ok := set.Value(attribute.Key(key))
	return ok && v.AsBool()
}

// TestAPIMetrics: each server API request is counted by route and the
// status it was answered with, refusals by middleware included, and
// timed; a path the API does not serve is route other, never its path.
func TestAPIMetrics(t *testing.T) {
	ts := startServer(t, nil)
	admin := adminToken(t, testKeys, roomAdmin)
	ts.dial(t, "r", "ann")
	if n := ts.apiRequests(t, apiListRooms, "200"); n != 0 {
		t.Fatalf("list_rooms 200 before any request = %d; want 0", n)
	}
	big := map[string]string{"metadata": strings.Repeat("x", 17<<10)}
	for _, tc := range []struct {
		method, path, token string
		body                any
		route, code         string
	}{
		{http.MethodGet, "/api/v1/rooms", admin, nil, apiListRooms, "200"},
		{http.MethodGet, "/api/v1/rooms", admin, nil, apiListRooms, "200"},
		{http.MethodGet, "/api/v1/rooms/r/participants", "", nil, apiListParticipants, "401"},
		{http.MethodGet, "/api/v1/rooms/nope/participants/ann", admin, nil, apiGetParticipant, "404"},
		{http.MethodPatch, "/api/v1/rooms/r/participants/ann", admin, big, apiUpdateParticipant, "413"},
		{http.MethodDelete, "/api/v1/rooms/r/participants/ann", admin, nil, apiRemoveParticipant, "204"},
		{http.MethodGet, "/api/v1/secret-room-name", admin, nil, apiOther, "404"},
	} {
		before := ts.apiRequests(t, tc.route, tc.code)
		if got := api(t, tc.method, ts.http+tc.path, tc.token, tc.body, nil); strconv.Itoa(got) != tc.code {
			t.Fatalf("%s %s = %d; want %s", tc.method, tc.path, got, tc.code)
		}
		if n := ts.apiRequests(t, tc.route, tc.code); n != before+1 {
			t.Errorf("after %s %s: media_api_requests{route=%s,code=%s} = %d; want %d", tc.method, tc.path, tc.route, tc.code, n, before+1)
		}
	}
	if n := ts.histogramCount(t, "media_api_request_duration", "route", apiListRooms); n != 2 {
		t.Errorf("media_api_request_duration{route=list_rooms} count = %d; want 2", n)
	}
	if n := ts.histogramCount(t, "media_api_request_duration", "", ""); n != 7 {
		t.Errorf("media_api_request_duration count = %d; want 7", n)
	}
}
