package load

import (
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    serverSample
		wantErr bool
	}{
		{
			name: "labelled series",
			text: `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total{instance="i-1",service="media-service"} 12.5
process_resident_memory_bytes 4.2e+07
media_goroutine_count{instance="i-1",note="a } brace"} 321
process_open_fds 17
go_memstats_heap_inuse_bytes 1.5e+06
go_goroutines 300
`,
			want: serverSample{CPUSeconds: 12.5, RSS: 4.2e7, Goroutines: 321, FDs: 17, HeapInuse: 1.5e6},
		},
		{
			name: "go_goroutines when the media gauge is missing",
			text: "process_cpu_seconds_total 1\ngo_goroutines 42\n",
			want: serverSample{CPUSeconds: 1, Goroutines: 42},
		},
		{
			name:    "no CPU series",
			text:    "go_goroutines 42\n",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMetrics(strings.NewReader(tt.text))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseMetrics() error = %v; want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			got.At = tt.want.At
			if got != tt.want {
				t.Errorf("parseMetrics() = %+v; want %+v", got, tt.want)
			}
		})
	}
}
