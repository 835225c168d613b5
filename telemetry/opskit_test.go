package telemetry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/media-service/media-service/telemetry"
)

// TestOpsKitEndToEnd runs the real binary with both readers on: a real
// Prometheus scrapes its ops port and evaluates alerts.yml, and an in-test
// OTLP/HTTP receiver stands in for a collector. The push interval is an
// hour, so the only push the receiver can get is the one Shutdown sends
// after the drain: it must carry the final values.
func TestOpsKitEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary and Prometheus; skipped with -short")
	}
	bin := buildService(t)
	rcv := telemetry.NewOTLPReceiver(t)
	svc := startProcess(t, bin,
		"OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.URL(), "OTEL_METRIC_EXPORT_INTERVAL=3600000",
		"FLY_MACHINE_ID=opskit-machine", "FLY_REGION=opskit-region",
		"MEDIA_LEAK_SAMPLE_INTERVAL=100ms", "MEDIA_LEAK_BASELINE_SAMPLE=5", "MEDIA_DRAIN_TIMEOUT=5s")
	prom := startPrometheus(t, svc.opsAddr)

	t.Run("goroutine series reach Prometheus with the instance's labels", func(t *testing.T) {
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
	})

	t.Run("Prometheus evaluates every alert rule without error", func(t *testing.T) {
		want := alertNames(t)
		deadline := time.Now().Add(30 * time.Second)
		for {
			health := prom.ruleHealth(t)
			bad := []string{}
			for _, name := range want {
				if health[name] != "ok" {
					bad = append(bad, name+"="+health[name])
				}
			}
			if len(bad) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rules not healthy after 30s: %v", bad)
			}
			time.Sleep(200 * time.Millisecond) // poll the next evaluation
		}
	})

	t.Run("every metric in alerts.yml and dashboard.json is in the live scrape", func(t *testing.T) {
		fams := scrapeOps(t, svc.opsAddr)
		for _, name := range usedMetricNames(t) {
			if !exported(fams, name) {
				t.Errorf("%s is used by alerts.yml or dashboard.json but not in the scrape of the running service", name)
			}
		}
	})

	if n := len(rcv.Pushes()); n != 0 {
		t.Fatalf("OTLP pushes before the drain = %d; want 0 with an hour's interval", n)
	}
	if code := svc.stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; want 0", code)
	}

	t.Run("the final OTLP push after SIGTERM carries the final values", func(t *testing.T) {
		pushes := rcv.Pushes()
		if len(pushes) != 1 {
			t.Fatalf("OTLP pushes after the drain = %d; want exactly 1 (the Shutdown flush)", len(pushes))
		}
		last := pushes[0]
		res := telemetry.PushedResource(last)
		want := map[string]string{"service.name": "media-service", "service.version": testVersion,
			"service.instance.id": "opskit-machine", "cloud.region": "opskit-region"}
		for k, v := range want {
			if res[k] != v {
				t.Errorf("pushed resource %s = %q; want %q", k, res[k], v)
			}
		}
		for _, name := range []string{"media_goroutine_count", "media_goroutine_count_max", "media_potential_goroutine_leak"} {
			if _, ok := telemetry.PushedValue(last, name); !ok {
				t.Errorf("final push lacks %s", name)
			}
		}
	})
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
	exprs = append(exprs, jsonExprs(doc)...)
	var names []string
	for _, e := range exprs {
		names = append(names, metricName.FindAllString(e, -1)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// jsonExprs collects the string values of every "expr" and "query" key.
func jsonExprs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "query") {
				out = append(out, s)
				continue
			}
			out = append(out, jsonExprs(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, jsonExprs(x)...)
		}
	}
	return out
}
