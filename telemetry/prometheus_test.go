package telemetry_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// prometheusServer is a real Prometheus (Debian's package) scraping one
// media-service instance every second and evaluating alerts.yml.
type prometheusServer struct {
	url string
}

// startPrometheus runs Prometheus on a free loopback port with its storage
// in a temporary directory, scraping target (host:port of the ops
// listener) as job "media-service", the job name alerts.yml expects.
func startPrometheus(t *testing.T, target string) *prometheusServer {
	t.Helper()
	bin := lookTool(t, "prometheus")
	rules, err := filepath.Abs("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: media-service
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	p := &prometheusServer{url: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatal("prometheus exited at start")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s within 30s", p.url)
		}
	}
}

// freeAddr is a loopback address nobody listens on right now. Prometheus
// takes its listen address as a flag, so the port is picked here; the
// window in which another process could take it is tiny.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// sample is one element of an instant query's vector result.
type sample struct {
	Labels map[string]string
	Value  float64
}

// query runs an instant PromQL query through the HTTP API.
func (p *prometheusServer) query(t *testing.T, q string) []sample {
	t.Helper()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(q), &body)
	if body.Status != "success" {
		t.Fatalf("query %s: %s %s", q, body.Status, body.Error)
	}
	out := make([]sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("query %s: value %q: %v", q, s, err)
		}
		out = append(out, sample{Labels: r.Metric, Value: v})
	}
	return out
}

// waitQuery polls q until ok accepts its result or within passes.
func (p *prometheusServer) waitQuery(t *testing.T, q string, within time.Duration, ok func([]sample) bool) []sample {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := p.query(t, q)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %s = %v after %s; condition never met", q, got, within)
		}
		time.Sleep(200 * time.Millisecond) // poll interval against a 1 s scrape
	}
}

// ruleHealth is each rule's health after Prometheus evaluated it.
func (p *prometheusServer) ruleHealth(t *testing.T) map[string]string {
	t.Helper()
	var body struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/rules", &body)
	out := map[string]string{}
	for _, g := range body.Data.Groups {
		for _, r := range g.Rules {
			out[r.Name] = r.Health + r.LastError
		}
	}
	return out
}

func (p *prometheusServer) get(t *testing.T, path string, into any) {
	t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		t.Fatalf("GET prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("GET prometheus %s: decode: %v", path, err)
	}
}
