package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/internal/netlab"
	"github.com/media-service/media-service/telemetry"
)

// opsKitMaxConns is the instance's MEDIA_MAX_CONNS: not the default (4096),
// so media_http_conns_limit can match it only if the configured value
// reaches the gauge.
const opsKitMaxConns = 3000

// TestOpsKitEndToEnd runs the real binary with both readers on: a real
// Prometheus scrapes its ops port and evaluates alerts.yml, and an in-test
// OTLP/HTTP receiver stands in for a collector. Two Go participants move
// real media through it (Bob relay-only, through the embedded TURN relay),
// and a few refusals are provoked so their counters exist. The push
// interval is an hour, so the only push the receiver can get is the one
// Shutdown sends after the drain: it must carry the final values, including
// the session the drain closed after Prometheus's last scrape.
func TestOpsKitEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary and Prometheus; skipped with -short")
	}
	bin := buildService(t)
	rcv := telemetry.NewOTLPReceiver(t)
	svc := startProcess(t, bin,
		"OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.URL(), "OTEL_METRIC_EXPORT_INTERVAL=3600000",
		"FLY_MACHINE_ID=opskit-machine", "FLY_REGION=opskit-region",
		"MEDIA_LEAK_SAMPLE_INTERVAL=100ms", "MEDIA_LEAK_BASELINE_SAMPLE=5", "MEDIA_DRAIN_TIMEOUT=3s",
		"MEDIA_MAX_CONNS="+strconv.Itoa(opsKitMaxConns),
		"MEDIA_MAX_SESSIONS=500") // fixed: its default follows the machine's cores
	prom := startPrometheus(t, svc.OpsAddr)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	t.Run("goroutine series reach Prometheus with the instance's labels", func(t *testing.T) {
		checkGoroutineSeries(t, prom)
	})
	t.Run("Prometheus evaluates every alert rule without error", func(t *testing.T) {
		checkRulesHealthy(t, prom)
	})

	alice := join(ctx, t, svc, "opskit", "alice", webrtc.ICETransportPolicyAll)
	stopMedia := publish(ctx, t, alice)
	var bobWS netlab.Resettable
	bob := joinWith(ctx, t, svc, "opskit", "bob", webrtc.ICETransportPolicyRelay,
		&websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: bobWS.DialContext}) // through the TURN relay
	if err := bob.AwaitMedia(ctx, alice.ID()); err != nil {
		t.Fatalf("bob receiving alice: %v", err)
	}
	// Bob's WebSocket is reset; he resumes as the same participant, and
	// his media, which never stopped, counts as back at once.
	if err := bobWS.Reset(); err != nil {
		t.Fatal(err)
	}
	for bob.Resumes() == 0 {
		if ctx.Err() != nil {
			t.Fatalf("bob did not resume after his WebSocket was reset: %v", bob.Err())
		}
		time.Sleep(20 * time.Millisecond) // poll the client's count
	}
	sendBadCandidate(t, alice) // her publisher connection has its remote description
	turnBadAuth(t, bob)
	var refused *client.DialError
	if _, err := client.Dial(ctx, "ws://"+svc.HTTPAddr+"/v1/rtc", "not-a-token", client.Options{}); !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized {
		t.Fatalf("join with a bad token = %v; want a 401 refusal", err)
	}

	listRooms(t, svc.HTTPAddr) // so the server API's latency histogram has a series

	t.Run("media counters reach Prometheus after media flowed", func(t *testing.T) {
		checkMediaSeries(t, prom)
	})
	t.Run("every dashboard query runs in Prometheus", func(t *testing.T) {
		checkDashboardQueries(t, prom, scrapeOps(t, svc.OpsAddr))
	})
	// Alice stops and leaves; Bob stays, so the drain has to close him.
	stopMedia()
	if err := alice.Leave(ctx); err != nil {
		t.Fatalf("alice leave: %v", err)
	}
	prom.waitQuery(t, `sum(media_sessions_active{job="media-service"}) == 1`, 30*time.Second, nonEmpty)
	before := scrapeOps(t, svc.OpsAddr)
	t.Run("every metric in alerts.yml and dashboard.json is in the live scrape", func(t *testing.T) {
		checkUsedNamesExported(t, before)
	})
	if n := len(rcv.Pushes()); n != 0 {
		t.Fatalf("OTLP pushes before the drain = %d; want 0 with an hour's interval", n)
	}
	if code := svc.Stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; want 0", code)
	}

	t.Run("the final OTLP push after SIGTERM carries the final values", func(t *testing.T) {
		pushes := rcv.Pushes()
		if len(pushes) != 1 {
			t.Fatalf("OTLP pushes after the drain = %d; want exactly 1 (the Shutdown flush)", len(pushes))
		}
		checkFinalPush(t, pushes[0], before)
	})
}

func checkGoroutineSeries(t *testing.T, prom *prometheusServer) {
	t.Helper()
	for _, name := range []string{"media_goroutine_count", "media_goroutine_count_max", "media_potential_goroutine_leak", "media_goroutine_leak_baseline"} {
		got := prom.waitQuery(t, name+`{job="media-service"}`, 30*time.Second, func(s []sample) bool { return len(s) == 1 })
		want := map[string]string{"service_name": "media-service", "service_version": testVersion,
			"service_instance_id": "opskit-machine", "cloud_region": "opskit-region"}
		for k, v := range want {
			if got[0].Labels[k] != v {
				t.Errorf("%s label %s = %q; want %q", name, k, got[0].Labels[k], v)
			}
		}
	}
	prom.waitQuery(t, `media_goroutine_leak_baseline{job="media-service"} > 0`, 30*time.Second, nonEmpty)
	if got := prom.query(t, `media_potential_goroutine_leak{job="media-service"}`); got[0].Value != 0 {
		t.Errorf("media_potential_goroutine_leak on an idle instance = %g; want 0", got[0].Value)
	}
	if got := prom.query(t, `media_goroutine_count_max - media_goroutine_count < 0`); len(got) != 0 {
		t.Errorf("media_goroutine_count_max below media_goroutine_count: %v", got)
	}
	if got := prom.query(t, `process_resident_memory_bytes{job="media-service",service_instance_id="opskit-machine"}`); len(got) != 1 {
		t.Errorf("process_resident_memory_bytes with the instance label = %v; want one series", got)
	}
}

func checkRulesHealthy(t *testing.T, prom *prometheusServer) {
	t.Helper()
	want := alertNames(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		health := prom.ruleHealth(t)
		var bad []string
		for _, name := range want {
			if health[name] != "ok" {
				bad = append(bad, name+"="+health[name])
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules not healthy after 30s: %v", bad)
		}
		time.Sleep(200 * time.Millisecond) // poll the next evaluation
	}
}

// checkMediaSeries asks Prometheus for what two participants (one of them
// resumed once), a bad token, a bad candidate and a bad TURN credential
// must have left behind. The
// connection refusal counters exist at 0 for both reasons, which the alerts
// on them select by, and both limit gauges read the instance's
// configuration.
func checkMediaSeries(t *testing.T, prom *prometheusServer) {
	t.Helper()
	for _, q := range []string{
		`sum(media_rtp_forwarded_packets_total{job="media-service"}) > 0`,
		`sum(media_rtp_forwarded_bytes_total{job="media-service"}) > 0`,
		`sum(media_sessions_active{job="media-service"}) == 2`,
		`sum(media_rooms_active{job="media-service"}) == 1`,
		`sum(media_joins_total{job="media-service",result="ok"}) == 2`,
		`sum(media_joins_total{job="media-service",result="unauthorized"}) == 1`,
		`sum(media_publications_active{job="media-service"}) == 2`,
		`sum(media_turn_allocations_active{job="media-service"}) > 0`,
		`sum(media_turn_relayed_bytes_total{job="media-service"}) > 0`,
		`sum(media_turn_auth_failures_total{job="media-service",reason="malformed"}) >= 1`,
		`sum(media_ice_candidates_refused_total{job="media-service",reason="invalid"}) >= 1`,
		`sum(media_resumes_total{job="media-service",result="ok"}) == 1`,
		`count(media_resumes_total{job="media-service"}) == 8`, // every result from 0
		`count(media_ice_restarts_total{job="media-service"}) == 2`,
		`sum(media_resume_media_seconds_count{job="media-service"}) == 1`,
		`histogram_quantile(0.99, sum by (le) (media_join_duration_seconds_bucket{job="media-service"})) > 0`,
		`media_sessions_limit{job="media-service"} == 500`,
		`media_http_conns_limit{job="media-service"} == ` + strconv.Itoa(opsKitMaxConns),
		`sum(media_http_conns_active{job="media-service"}) >= 2`, // alice's and bob's WebSockets
		`count(media_http_conn_refusals_total{job="media-service",reason=~"per_ip|total"}) == 2`,
		`media_draining{job="media-service"} == 0`,
	} {
		prom.waitQuery(t, q, 30*time.Second, nonEmpty)
	}
}

// checkDashboardQueries runs every panel query of dashboard.json, with
// its variables filled in as Grafana would, through Prometheus's query API
// (which fails the test on a parse or evaluation error). A query whose
// media_* series all exist in the live scrape must show data within 15 s.
func checkDashboardQueries(t *testing.T, prom *prometheusServer, fams map[string]*dto.MetricFamily) {
	t.Helper()
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatalf("read dashboard.json: %v", err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	vars := strings.NewReplacer("$job", "media-service", "$instance", ".*", "$__rate_interval", "1m")
	for _, q := range jsonStrings(doc, "expr") {
		live := true
		for _, name := range metricName.FindAllString(q, -1) {
			live = live && exported(fams, name)
		}
		if !live {
			prom.query(t, vars.Replace(q))
			continue
		}
		// A rate needs two scrapes of a series born a moment ago.
		prom.waitQuery(t, vars.Replace(q), 15*time.Second, nonEmpty)
	}
}

// checkUsedNamesExported requires every media_* name of the rules and the
// dashboard in the live scrape. Every counter starts at 0 for its fixed
// attribute sets, so a name that has not counted yet in this run still has
// a series; a name with none is misspelt or gone. The instance here runs
// alone, without a fleet directory: the media_fleet_* names are checked
// against a running Fleet's scrape by TestFleetMetricsExported.
func checkUsedNamesExported(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	for _, name := range usedMetricNames(t) {
		if !exported(fams, name) && !strings.HasPrefix(name, fleetPrefix) {
			t.Errorf("%s is used by alerts.yml or dashboard.json but not in the scrape of the running service", name)
		}
	}
}

// checkFinalPush compares the Shutdown push with the scrape taken after
// the media stopped and before SIGTERM.
func checkFinalPush(t *testing.T, last *colmetrics.ExportMetricsServiceRequest, before map[string]*dto.MetricFamily) {
	t.Helper()
	res := telemetry.PushedResource(last)
	want := map[string]string{"service.name": "media-service", "service.version": testVersion,
		"service.instance.id": "opskit-machine", "cloud.region": "opskit-region"}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("pushed resource %s = %q; want %q", k, res[k], v)
		}
	}
	// Frozen since the media stopped: the final push must hold exactly the
	// values of the last scrape. Observable instruments lose their values
	// if their owner unregisters the callback when it closes, because the
	// drain closes the media engine and the relay before the final flush.
	for _, name := range []string{"media_rtp_forwarded_packets", "media_rtp_forwarded_bytes", "media_joins"} {
		got, _ := telemetry.PushedValue(last, name)
		if want := scrapedSum(before, name+"_total"); got != want || got == 0 {
			t.Errorf("final push %s = %g; want %g, the value once media stopped", name, got, want)
		}
	}
	// Bob's media takes the relay and he stays connected into the drain, so
	// the relay's byte count may still grow a little (RTCP, consent
	// checks), never shrink.
	if got, want := pushedOr0(last, "media_turn_relayed"), scrapedSum(before, "media_turn_relayed_bytes_total"); got < want || got == 0 {
		t.Errorf("final push media_turn_relayed = %g; want at least %g, the last scraped value", got, want)
	}
	finals := []struct {
		name  string
		match []string
		want  float64
	}{
		{"media_sessions_active", nil, 0},
		{"media_sessions_closed", []string{"reason", "client_leave"}, 1},
		{"media_sessions_closed", []string{"reason", "server_shutdown"}, 1}, // bob, at the drain deadline
		{"media_draining", nil, 1},
		{"media_http_conns_limit", nil, opsKitMaxConns},
		{"media_potential_goroutine_leak", nil, 0},
	}
	for _, f := range finals {
		if got, ok := telemetry.PushedValue(last, f.name, f.match...); !ok || got != f.want {
			t.Errorf("final push %s%v = %g (present %v); want %g", f.name, f.match, got, ok, f.want)
		}
	}
}

func pushedOr0(m *colmetrics.ExportMetricsServiceRequest, name string) float64 {
	v, _ := telemetry.PushedValue(m, name)
	return v
}

// scrapedSum adds up every series of a counter or gauge family.
func scrapedSum(fams map[string]*dto.MetricFamily, name string) float64 {
	var total float64
	for _, m := range fams[name].GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

func nonEmpty(s []sample) bool { return len(s) > 0 }

// scrapeOps reads the instance's /metrics and parses it.
func scrapeOps(t *testing.T, opsAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// exported reports whether name is a series of the scrape: a family of
// that name, or the _bucket, _sum or _count series of a histogram family.
func exported(fams map[string]*dto.MetricFamily, name string) bool {
	if _, ok := fams[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if f, found := fams[base]; ok && found && f.GetType() == dto.MetricType_HISTOGRAM {
			return true
		}
	}
	return false
}

// metricName matches our metric names in PromQL; label names and values,
// functions and the runbook URLs ("media-service") do not match.
var metricName = regexp.MustCompile(`\bmedia_[a-z0-9_]+`)

// usedMetricNames are the media_* names in alerts.yml's expressions and in
// every "expr" of dashboard.json, sorted, without repeats.
func usedMetricNames(t *testing.T) []string {
	t.Helper()
	var exprs []string
	rules, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatalf("read alerts.yml: %v", err)
	}
	for line := range strings.Lines(string(rules)) {
		if trimmed := strings.TrimSpace(line); !strings.HasPrefix(trimmed, "#") {
			exprs = append(exprs, trimmed)
		}
	}
	dash, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatalf("read dashboard.json: %v", err)
	}
	var doc any
	if err := json.Unmarshal(dash, &doc); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	exprs = append(exprs, jsonStrings(doc, "expr", "query")...)
	var names []string
	for _, e := range exprs {
		names = append(names, metricName.FindAllString(e, -1)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// jsonStrings collects the string values of every key named in keys, at
// any depth: panel queries are "expr", template variable queries "query".
func jsonStrings(v any, keys ...string) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && slices.Contains(keys, k) {
				out = append(out, s)
				continue
			}
			out = append(out, jsonStrings(x, keys...)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, jsonStrings(x, keys...)...)
		}
	}
	return out
}

// listRooms asks the server API for the rooms with a dev-mode admin
// token, expecting 200.
func listRooms(t *testing.T, httpAddr string) {
	t.Helper()
	tok, err := auth.DevKeyPair().MintAdmin(auth.AdminToken{Name: "opskit", Grants: auth.AdminGrants{RoomList: true}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/v1/rooms", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/v1/rooms: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/rooms = %s; want 200", resp.Status)
	}
}
