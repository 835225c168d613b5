package load

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one run, written as a table or as JSON (-json).
// Durations are milliseconds, CPU per packet microseconds.
type Report struct {
	Scenario string      `json:"scenario"`
	Started  time.Time   `json:"started"`
	Machine  machine     `json:"machine"`
	Shape    shapeReport `json:"shape"`

	Joins *joinReport `json:"joins,omitempty"`
	// Receivers counts light and full receivers with -light (nil: all
	// full).
	Receivers *receiverCounts `json:"receivers,omitempty"`
	Server    *phaseReport    `json:"server,omitempty"`
	Floor     *phaseReport    `json:"floor,omitempty"`
	// FloorSends names the floor the figures compare with: its relay sent
	// each packet's copies batched (FloorSendsBatched, the default, as the
	// server does) or one system call each (FloorSendsSingle).
	FloorSends string           `json:"floor_sends,omitempty"`
	CostRatio  float64          `json:"cost_vs_floor,omitempty"` // server CPU/packet ÷ floor CPU/packet
	Resources  *resourceReport  `json:"server_resources,omitempty"`
	Placement  *placementReport `json:"placement,omitempty"` // with several instances
	Drain      *drainReport     `json:"drain,omitempty"`     // with -drain-after
	Churn      *churnReport     `json:"churn,omitempty"`
	Simulcast  *simulcastReport `json:"simulcast,omitempty"` // simulcast and dynacast
	Capped     *cappedReport    `json:"capped,omitempty"`
	Capacity   []capacityReport `json:"capacity,omitempty"` // one search per shape

	LoadGenCPUSeconds float64          `json:"loadgen_cpu_seconds"`
	ClientDiagnostics int64            `json:"client_diagnostics"`      // lines the participants' clients logged (failed answers, candidates)
	ServerEvents      map[string]int64 `json:"server_events,omitempty"` // "error CODE (MESSAGE)" and "leave REASON" messages the server sent
	Failures          []string         `json:"failures,omitempty"`
	OK                bool             `json:"ok"`
}

// machine describes where the run happened. The load averages say how
// busy the machine was with other work, which the numbers depend on.
type machine struct {
	CPUs      int     `json:"cpus"`
	GoVersion string  `json:"go_version"`
	OSArch    string  `json:"os_arch"`
	LoadStart float64 `json:"load1_start"`
	LoadEnd   float64 `json:"load1_end"`
}

type shapeReport struct {
	Participants   int     `json:"participants"`
	Publishers     int     `json:"publishers"`
	Rooms          int     `json:"rooms"`
	VideoPPS       float64 `json:"video_packets_per_second"`
	VideoKbps      int     `json:"video_kbps"`
	VideoPacket    int     `json:"video_packet_bytes"`
	AudioPPS       int     `json:"audio_packets_per_second"`
	AudioPacket    int     `json:"audio_packet_bytes"`
	WindowSeconds  float64 `json:"window_seconds"`
	ExpectedPerSec float64 `json:"expected_forwarded_per_second"`
}

type joinReport struct {
	Attempted      int     `json:"attempted"`
	Joined         int     `json:"joined"`
	Failed         int     `json:"failed"`
	FirstMediaP50  float64 `json:"first_media_p50_ms"`
	FirstMediaP95  float64 `json:"first_media_p95_ms"`
	FirstMediaMax  float64 `json:"first_media_max_ms"`
	FirstVideoP50  float64 `json:"first_video_p50_ms"`
	FirstVideoP95  float64 `json:"first_video_p95_ms"`
	FirstErrorText string  `json:"first_error,omitempty"`
	// Redirected counts the redirects the joins followed from the
	// instance they dialled to the one that holds the room (a fleet's
	// `redirect`), each hop once.
	Redirected int64 `json:"redirected"`
	// Direct and ViaRedirect split the timed joins (the first publisher
	// of each room is not timed) by whether they reached the room's
	// instance at once or after a redirect: the difference of their
	// first-media times is what a redirect costs.
	Direct      joinSplit `json:"direct"`
	ViaRedirect joinSplit `json:"redirected_joins"`
}

// joinSplit is the first-media time of a part of the timed joins.
type joinSplit struct {
	Joins         int     `json:"joins"`
	FirstMediaP50 float64 `json:"first_media_p50_ms"`
	FirstMediaP95 float64 `json:"first_media_p95_ms"`
}

// placementReport is how the joins were spread over several instances.
type placementReport struct {
	Policy string         `json:"policy"`
	Joins  map[string]int `json:"joins_per_url"` // joins dialled through each base URL
}

type phaseReport struct {
	WindowSeconds   float64 `json:"window_seconds"`
	Forwarded       uint64  `json:"forwarded_packets"`
	PacketsPerSec   float64 `json:"forwarded_per_second"`
	Expected        uint64  `json:"expected_packets"`
	Lost            uint64  `json:"lost_packets"`
	LostAudio       uint64  `json:"lost_audio_packets"`
	LostVideo       uint64  `json:"lost_video_packets"`
	LossPercent     float64 `json:"loss_percent"`
	Duplicates      uint64  `json:"duplicates"`
	Unexpected      uint64  `json:"unexpected"`
	LatencyP50      float64 `json:"latency_p50_ms"`
	LatencyP95      float64 `json:"latency_p95_ms"`
	LatencyP99      float64 `json:"latency_p99_ms"`
	LatencyMax      float64 `json:"latency_max_ms"`
	CPUSeconds      float64 `json:"cpu_seconds,omitempty"`
	CPUMicrosPerPkt float64 `json:"cpu_us_per_packet,omitempty"`
	SendErrors      uint64  `json:"send_errors,omitempty"`
	SkippedSends    uint64  `json:"skipped_sends,omitempty"`
}

// resourceReport is the server's footprint from its /metrics: idle before
// the first join, loaded with every participant connected.
type resourceReport struct {
	Baseline              serverSample `json:"baseline"`
	Loaded                serverSample `json:"loaded"`
	Participants          int          `json:"participants"`
	RSSPerParticipantMiB  float64      `json:"rss_per_participant_mib"`
	GoroutinesPerParticip float64      `json:"goroutines_per_participant"`
}

type churnReport struct {
	Cycles         int          `json:"cycles"`
	Completed      int          `json:"completed"`
	Failed         int          `json:"failed"`
	Seconds        float64      `json:"seconds"`
	Before         serverSample `json:"before"`
	After          serverSample `json:"after"`
	SettledSeconds float64      `json:"settled_seconds"`
	Flaps          *flapReport  `json:"flaps,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func newPhaseReport(r *phaseResult) *phaseReport {
	t := &r.media
	p := &phaseReport{
		WindowSeconds: r.window.Seconds(),
		Forwarded:     t.got,
		Expected:      t.expected,
		Lost:          t.lost(),
		LostAudio:     t.lostKind[kindAudio],
		LostVideo:     t.lostKind[kindVideo],
		Duplicates:    t.dup,
		Unexpected:    t.unexpected,
		LatencyP50:    ms(time.Duration(t.lat.quantile(0.50))),
		LatencyP95:    ms(time.Duration(t.lat.quantile(0.95))),
		LatencyP99:    ms(time.Duration(t.lat.quantile(0.99))),
		LatencyMax:    ms(time.Duration(t.lat.max)),
		SendErrors:    r.sendErrors,
		SkippedSends:  r.skipped,
	}
	if r.window > 0 {
		p.PacketsPerSec = float64(t.got) / r.window.Seconds()
	}
	if t.expected > 0 {
		p.LossPercent = 100 * float64(p.Lost) / float64(t.expected)
	}
	if r.cpuKnown {
		p.CPUSeconds = r.cpu.Seconds()
		p.CPUMicrosPerPkt = float64(r.cpuPerPacket()) / float64(time.Microsecond)
	}
	return p
}

func newMachine() machine {
	return machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH, LoadStart: loadAvg()}
}

// loadAvg is the 1-minute load average, 0 where /proc is missing.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscanf(string(b), "%f", &l)
	return l
}

func (r *Report) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

func (r *Report) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	r.table(tw)
	return tw.Flush()
}

func (r *Report) table(w io.Writer) {
	s := r.Shape
	fmt.Fprintf(w, "mediaload %s\t%s, %d CPUs, load %.2f -> %.2f\n", r.Scenario, r.Machine.OSArch, r.Machine.CPUs, r.Machine.LoadStart, r.Machine.LoadEnd)
	if r.Scenario == "capacity" {
		fmt.Fprintf(w, "media\tper publisher: video %.0f pkt/s x %d B, audio %d pkt/s x %d B; each step %.0f s measured\n",
			s.VideoPPS, s.VideoPacket, s.AudioPPS, s.AudioPacket, s.WindowSeconds)
	} else {
		fmt.Fprintf(w, "shape\t%d participants (%d publishing) in %d room(s); video %.0f pkt/s x %d B, audio %d pkt/s x %d B\n",
			s.Participants, s.Publishers, s.Rooms, s.VideoPPS, s.VideoPacket, s.AudioPPS, s.AudioPacket)
	}
	if j := r.Joins; j != nil {
		fmt.Fprintf(w, "joins\t%d/%d joined, %d failed, %d redirected\n", j.Joined, j.Attempted, j.Failed, j.Redirected)
		fmt.Fprintf(w, "join to first media\tp50 %.1f ms\tp95 %.1f ms\tmax %.1f ms\n", j.FirstMediaP50, j.FirstMediaP95, j.FirstMediaMax)
		fmt.Fprintf(w, "join to first video\tp50 %.1f ms\tp95 %.1f ms\n", j.FirstVideoP50, j.FirstVideoP95)
		if j.ViaRedirect.Joins > 0 {
			for _, s := range []struct {
				name string
				js   joinSplit
			}{{"direct", j.Direct}, {"redirected", j.ViaRedirect}} {
				fmt.Fprintf(w, "join to first media, %s\tp50 %.1f ms\tp95 %.1f ms\t(%d joins)\n", s.name, s.js.FirstMediaP50, s.js.FirstMediaP95, s.js.Joins)
			}
		}
	}
	if p := r.Placement; p != nil {
		for _, u := range slices.Sorted(maps.Keys(p.Joins)) {
			fmt.Fprintf(w, "joins through %s (%s)\t%d\n", u, p.Policy, p.Joins[u])
		}
	}
	r.drainTable(w)
	r.forwardingTable(w)
	r.simulcastTable(w)
	r.cappedTable(w)
	r.capacityTable(w)
	r.resourceTable(w)
	fmt.Fprintf(w, "\nload generator CPU\t%.1f s\n", r.LoadGenCPUSeconds)
	fmt.Fprintf(w, "client diagnostics\t%d (the first ones are on stderr)\n", r.ClientDiagnostics)
	for _, k := range slices.Sorted(maps.Keys(r.ServerEvents)) {
		fmt.Fprintf(w, "server sent %s\t%d\n", k, r.ServerEvents[k])
	}
	if r.OK {
		fmt.Fprintln(w, "result\tOK")
		return
	}
	fmt.Fprintf(w, "result\tFAILED: %s\n", strings.Join(r.Failures, "; "))
}

func (r *Report) drainTable(w io.Writer) {
	d := r.Drain
	if d == nil {
		return
	}
	fmt.Fprintf(w, "drain\tSIGTERM to %s (of %d instances) %.1f s into the window: %d of its %d participants moved, %d failed\n",
		d.Drained, d.Instances, d.AfterSeconds, d.Moved, d.Participants, d.MoveFailed)
	fmt.Fprintf(w, "rooms on one instance after the drain\t%d of %d\n", d.RoomsWhole, d.Rooms)
	for _, u := range slices.Sorted(maps.Keys(d.EndedAt)) {
		fmt.Fprintf(w, "participants at %s after the drain\t%d\n", u, d.EndedAt[u])
	}
	for _, k := range []struct {
		name string
		g    gapReport
	}{{"audio", d.AudioGap}, {"video", d.VideoGap}} {
		fmt.Fprintf(w, "drain gap, %s\tp50 %.1f ms\tmax %.1f ms\t(%d receivers)\n", k.name, k.g.P50, k.g.Max, k.g.Receivers)
	}
}

func (r *Report) forwardingTable(w io.Writer) {
	if r.Server == nil && r.Floor == nil {
		return
	}
	fmt.Fprintf(w, "\nforwarding\tserver\tfloor (bare UDP relay, %s)\n", r.FloorSends)
	row := func(name, format string, f func(*phaseReport) any) {
		fmt.Fprintf(w, "%s\t%s\t%s\n", name, cell(r.Server, format, f), cell(r.Floor, format, f))
	}
	row("window", "%.1f s", func(p *phaseReport) any { return p.WindowSeconds })
	row("forwarded packets", "%d", func(p *phaseReport) any { return p.Forwarded })
	row("forwarded per second", "%.0f", func(p *phaseReport) any { return p.PacketsPerSec })
	row("lost (audio/video)", "%s", func(p *phaseReport) any { return fmt.Sprintf("%d (%d/%d)", p.Lost, p.LostAudio, p.LostVideo) })
	row("duplicates (retransmissions)", "%d", func(p *phaseReport) any { return p.Duplicates })
	row("loss", "%.3f %%", func(p *phaseReport) any { return p.LossPercent })
	row("latency p50", "%.3f ms", func(p *phaseReport) any { return p.LatencyP50 })
	row("latency p95", "%.3f ms", func(p *phaseReport) any { return p.LatencyP95 })
	row("latency p99", "%.3f ms", func(p *phaseReport) any { return p.LatencyP99 })
	row("latency max", "%.3f ms", func(p *phaseReport) any { return p.LatencyMax })
	row("CPU in window", "%.2f s", func(p *phaseReport) any { return p.CPUSeconds })
	row("CPU per forwarded packet", "%.2f µs", func(p *phaseReport) any { return p.CPUMicrosPerPkt })
	row("sends skipped (load generator behind)", "%d", func(p *phaseReport) any { return p.SkippedSends })
	if c := r.Receivers; c != nil {
		fmt.Fprintf(w, "receivers\t%d light (%d packets read at the socket), %d full (read by Pion; the latency is theirs)\n", c.Light, c.AtSocket, c.Full)
	}
	if r.CostRatio > 0 {
		fmt.Fprintf(w, "server cost vs floor (%s)\t%.2f x\n", r.FloorSends, r.CostRatio)
	}
}

func (r *Report) resourceTable(w io.Writer) {
	if x := r.Resources; x != nil {
		fmt.Fprintln(w, "\nserver (from /metrics)\tidle\tloaded\tper participant")
		fmt.Fprintf(w, "resident memory\t%.1f MiB\t%.1f MiB\t%.2f MiB\n", x.Baseline.RSS/mib, x.Loaded.RSS/mib, x.RSSPerParticipantMiB)
		fmt.Fprintf(w, "goroutines\t%.0f\t%.0f\t%.1f\n", x.Baseline.Goroutines, x.Loaded.Goroutines, x.GoroutinesPerParticip)
		fmt.Fprintf(w, "open fds\t%.0f\t%.0f\t\n", x.Baseline.FDs, x.Loaded.FDs)
		fmt.Fprintf(w, "bandwidth estimates (feedback)\t%.0f\t%.0f\t\n", x.Baseline.Estimates, x.Loaded.Estimates)
		fmt.Fprintf(w, "subscriptions paused (congestion)\t%.0f\t%.0f\t\n", x.Baseline.Paused, x.Loaded.Paused)
	}
	if c := r.Churn; c != nil {
		fmt.Fprintf(w, "\nchurn\t%d/%d cycles in %.0f s, %d failed; settled in %.1f s\n", c.Completed, c.Cycles, c.Seconds, c.Failed, c.SettledSeconds)
		fmt.Fprintln(w, "server (from /metrics)\tbefore\tafter")
		fmt.Fprintf(w, "goroutines\t%.0f\t%.0f\n", c.Before.Goroutines, c.After.Goroutines)
		fmt.Fprintf(w, "open fds\t%.0f\t%.0f\n", c.Before.FDs, c.After.FDs)
		fmt.Fprintf(w, "heap in use (after GC)\t%.1f MiB\t%.1f MiB\n", c.Before.HeapInuse/mib, c.After.HeapInuse/mib)
		fmt.Fprintf(w, "resident memory\t%.1f MiB\t%.1f MiB\n", c.Before.RSS/mib, c.After.RSS/mib)
	}
}

const mib = 1 << 20

func cell(p *phaseReport, format string, f func(*phaseReport) any) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(format, f(p))
}
