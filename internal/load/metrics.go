package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serverSample is one scrape of the instance's ops /metrics: the standard
// process and Go collectors and our goroutine gauge.
type serverSample struct {
	CPUSeconds float64 `json:"cpu_seconds"`      // process_cpu_seconds_total
	RSS        float64 `json:"rss_bytes"`        // process_resident_memory_bytes
	Goroutines float64 `json:"goroutines"`       // media_goroutine_count (go_goroutines if absent)
	FDs        float64 `json:"open_fds"`         // process_open_fds
	HeapInuse  float64 `json:"heap_inuse_bytes"` // go_memstats_heap_inuse_bytes
	// TURNAllocations are the relay's live allocations, every transport's
	// (media_turn_allocations_active): with -relay, two per subscriber.
	TURNAllocations float64 `json:"turn_allocations"`
	// Estimates is how many bandwidth estimates the instance has made
	// from subscribers' transport-wide feedback (one per feedback
	// message: the media_subscriber_bandwidth_estimate_bps count), and
	// Paused the subscriptions congestion control pauses now
	// (media_subscriptions_paused): a subscriber that sent no feedback,
	// or too little, shows there.
	Estimates float64   `json:"bandwidth_estimates"`
	Paused    float64   `json:"paused_subscriptions"`
	At        time.Time `json:"at"`
}

// add sums o into s: the numbers of several instances are their sums.
// At is the later of the two.
func (s *serverSample) add(o serverSample) {
	s.CPUSeconds += o.CPUSeconds
	s.RSS += o.RSS
	s.Goroutines += o.Goroutines
	s.FDs += o.FDs
	s.HeapInuse += o.HeapInuse
	s.TURNAllocations += o.TURNAllocations
	s.Estimates += o.Estimates
	s.Paused += o.Paused
	if o.At.After(s.At) {
		s.At = o.At
	}
}

// scrapedNames are the series read from /metrics; any labels are ignored
// (the instance labels every series with its service and instance).
var scrapedNames = map[string]func(*serverSample, float64){
	"process_cpu_seconds_total":     func(s *serverSample, v float64) { s.CPUSeconds = v },
	"process_resident_memory_bytes": func(s *serverSample, v float64) { s.RSS = v },
	"media_goroutine_count":         func(s *serverSample, v float64) { s.Goroutines = v },
	"process_open_fds":              func(s *serverSample, v float64) { s.FDs = v },
	"go_memstats_heap_inuse_bytes":  func(s *serverSample, v float64) { s.HeapInuse = v },
	// One series per transport: their sum.
	"media_turn_allocations_active": func(s *serverSample, v float64) { s.TURNAllocations += v },
	// One series per reason (congestion only, so far): their sum.
	"media_subscriber_bandwidth_estimate_bps_count": func(s *serverSample, v float64) { s.Estimates += v },
	"media_subscriptions_paused":                    func(s *serverSample, v float64) { s.Paused += v },
}

// scraper reads an instance's ops /metrics.
type scraper struct {
	url    string // the /metrics URL
	gcURL  string // the heap profile with gc=1, which runs a collection first
	client *http.Client
}

func newScraper(opsURL string) *scraper {
	if opsURL == "" {
		return nil
	}
	base := strings.TrimRight(opsURL, "/")
	return &scraper{url: base + "/metrics", gcURL: base + "/debug/pprof/heap?gc=1", client: &http.Client{Timeout: 5 * time.Second}}
}

// collect makes the instance run a garbage collection (through its pprof
// heap endpoint), so a heap sample that follows counts live memory, not
// garbage awaiting collection. An instance without pprof is no error: the
// sample is then as the instance last left it.
func (s *scraper) collect(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.gcURL, nil)
	if err != nil {
		return
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// sample scrapes once. It fails when the CPU series is missing, since
// every number derived from the server depends on it.
func (s *scraper) sample(ctx context.Context) (serverSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return serverSample{}, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return serverSample{}, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return serverSample{}, fmt.Errorf("scrape %s: status %s", s.url, resp.Status)
	}
	smp, err := parseMetrics(resp.Body)
	if err != nil {
		return smp, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	return smp, nil
}

// parseMetrics reads the Prometheus text format and keeps scrapedNames.
func parseMetrics(r io.Reader) (serverSample, error) {
	smp := serverSample{At: time.Now(), Goroutines: -1}
	var goGoroutines float64
	found := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		name, v, ok := parseSampleLine(sc.Text())
		if !ok {
			continue
		}
		if name == "go_goroutines" {
			goGoroutines = v
		}
		if set := scrapedNames[name]; set != nil {
			set(&smp, v)
			found[name] = true
		}
	}
	if err := sc.Err(); err != nil {
		return smp, fmt.Errorf("read metrics: %w", err)
	}
	if !found["process_cpu_seconds_total"] {
		return smp, fmt.Errorf("no process_cpu_seconds_total series")
	}
	if smp.Goroutines < 0 {
		smp.Goroutines = goGoroutines
	}
	return smp, nil
}

// parseSampleLine splits `name{labels} value [timestamp]`.
func parseSampleLine(line string) (name string, v float64, ok bool) {
	if line == "" || line[0] == '#' {
		return "", 0, false
	}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return "", 0, false
	}
	name, rest := line[:end], line[end:]
	if rest[0] == '{' {
		close := strings.LastIndexByte(rest, '}')
		if close < 0 {
			return "", 0, false
		}
		rest = rest[close+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	return name, v, err == nil
}
