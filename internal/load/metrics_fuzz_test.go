package load

import (
	"strings"
	"testing"
)

// FuzzParseMetrics: whatever an instance (or something pretending to be
// one) answers on /metrics, parsing neither panics nor invents a CPU
// reading that was not there.
func FuzzParseMetrics(f *testing.F) {
	f.Add("process_cpu_seconds_total 1\n")
	f.Add("process_cpu_seconds_total{a=\"}\"} 2 1700000000\ngo_goroutines 3\n")
	f.Add("# HELP x\n{\n}\nmedia_goroutine_count{ 5\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := parseMetrics(strings.NewReader(text))
		if err == nil && !strings.Contains(text, "process_cpu_seconds_total") {
			t.Errorf("parseMetrics(%q) = %+v, nil; want an error without a CPU series", text, s)
		}
	})
}
