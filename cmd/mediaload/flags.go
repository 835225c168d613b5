package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/media-service/media-service/internal/load"
)

// commandLine is one parsed command line: the run's configuration and
// what the command itself does with the report. Secrets may also come from
// the environment (MEDIA_API_KEY, MEDIA_API_SECRET), as the server reads
// them, so they stay out of shell history and process listings.
type commandLine struct {
	cfg        load.Config
	jsonOut    bool
	quiet      bool
	cpuProfile string // write the load generator's own CPU profile here
	beside     string // with -spawn: another binary run at the same time (load.RunBeside)
}

// targetFlags are the flags that name the instances, resolved into
// Config.URLs and Config.OpsURLs once every flag is known.
type targetFlags struct {
	url, urls       string
	opsURL, opsURLs string
	set             map[string]bool // the flags given on the command line
}

func parseFlags(name string, args []string, stderr io.Writer) (commandLine, error) {
	about, ok := load.Describe(name)
	if !ok {
		return commandLine{}, usageError{fmt.Sprintf("unknown scenario %q (want fanout, meeting, churn, floor, simulcast, dynacast, capped or capacity)", name)}
	}
	cl := commandLine{cfg: load.DefaultConfig()}
	cl.cfg.SetScenario(name)
	fs := flag.NewFlagSet("mediaload "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "mediaload %s: %s\n\nflags:\n", name, about)
		fs.PrintDefaults()
	}
	var tf targetFlags
	cl.define(fs, &tf)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cl, err
		}
		return cl, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return cl, usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	tf.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { tf.set[f.Name] = true })
	if err := cl.resolve(tf); err != nil {
		return cl, usageError{err.Error()}
	}
	if err := cl.cfg.Validate(); err != nil {
		return cl, usageError{err.Error()}
	}
	if tf.set["beside"] || cl.cfg.BesideRelay {
		if err := load.CheckBeside(cl.cfg, cl.beside); err != nil {
			return cl, usageError{err.Error()}
		}
	}
	return cl, nil
}

func (cl *commandLine) define(fs *flag.FlagSet, tf *targetFlags) {
	c := &cl.cfg
	fs.StringVar(&tf.url, "url", c.URLs[0], "the instance's HTTP base URL (signaling is at /v1/rtc)")
	fs.StringVar(&tf.urls, "urls", "", "several instances' HTTP base URLs, comma-separated, instead of -url: participants join through them as -placement says")
	fs.StringVar(&c.Placement, "placement", c.Placement, "with -urls, how participants are spread over the instances: "+load.PlaceRoundRobin+" or "+load.PlaceRandom)
	fs.StringVar(&tf.opsURL, "ops-url", c.OpsURLs[0], "the instance's ops base URL, scraped at /metrics for CPU, memory and goroutines; empty to skip")
	fs.StringVar(&tf.opsURLs, "ops-urls", "", "with -urls, the instances' ops base URLs, comma-separated; their numbers are summed (default none: no server numbers)")
	fs.StringVar(&c.APIKey, "api-key", "", "API key that signs tokens (default $MEDIA_API_KEY; with no secret the public dev pair is used)")
	fs.StringVar(&c.APISecret, "api-secret", "", "API secret (default $MEDIA_API_SECRET, which -h never prints)")
	fs.BoolVar(&c.DevToken, "dev-token", false, "fetch tokens from the instance's /v1/dev/token (dev mode) instead of minting them")
	fs.StringVar(&c.Spawn, "spawn", "", "start this media-service binary in dev mode on free ports for the run (instead of -url or -urls and their ops URLs)")
	fs.IntVar(&c.SpawnFleet, "spawn-fleet", 0, "with -spawn, start a redis-server on a free loopback port and this many instances of the binary on it, as a fleet; participants join through them as -placement says")
	fs.DurationVar(&c.DrainAfter, "drain-after", 0, "with -spawn-fleet 2 or more (fanout, meeting): this long into the measured window, SIGTERM to the instance holding the most participants; they move to a sibling and the report gives each one's media gap")
	fs.IntVar(&c.GOMAXPROCS, "gomaxprocs", c.GOMAXPROCS, "with -spawn, the instance's GOMAXPROCS (0: Go's default, the CPUs it may use)")
	fs.StringVar(&c.CPUs, "cpus", "", "with -spawn, run the instance under `taskset -c LIST`, pinned to those CPUs, and the floor relay with it (pin mediaload itself with taskset -c OTHER mediaload ...)")
	fs.StringVar(&cl.beside, "beside", "", "fanout, meeting, with -spawn: run this other media-service binary at the same time, with the same shape and -cpus and its own load, and compare the two instances' CPU per forwarded packet (no floor): a comparison of two builds that the machine's moods between runs do not blur")
	fs.IntVar(&c.Light, "light", c.Light, "fanout, meeting, capacity: every receiver light (its media read at the socket, not by Pion: far cheaper for the load generator) but this many full ones, which give the latency; -1: all full")
	cl.defineShape(fs)
	cl.defineCapacity(fs)
	cl.defineMedia(fs)
	fs.BoolVar(&c.FloorBatch, "floor-batch", c.FloorBatch, "the floor relay sends each packet's copies with sendmmsg, as the server does; false: one sendto per copy, the slower floor of earlier reports")
	fs.BoolVar(&c.Floor, "floor", c.Floor, "also measure the bare UDP relay floor in this run, with the same shape")
	fs.IntVar(&c.JoinConcurrency, "join-concurrency", c.JoinConcurrency, "joins in flight at once")
	fs.DurationVar(&c.JoinTimeout, "join-timeout", c.JoinTimeout, "a join that has no media by then failed")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "churn: how long to wait for the server's goroutines to return to the baseline after the last leave")
	fs.Float64Var(&c.MaxLoss, "max-loss", c.MaxLoss, "fail the run when loss exceeds this percentage")
	fs.BoolVar(&cl.jsonOut, "json", false, "write the report as JSON on stdout")
	fs.BoolVar(&cl.quiet, "quiet", false, "no progress lines on stderr")
	fs.StringVar(&cl.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file (to check it is not the bottleneck)")
	fs.BoolVar(&c.NACK, "nack", c.NACK, "participants ask for retransmission of lost video packets (NACK), as browsers do")
	fs.BoolVar(&c.Relay, "relay", c.Relay, "participants that only subscribe connect relay-only, through the instance's own TURN relay")
	fs.BoolVar(&c.BesideRelay, "beside-relay", c.BesideRelay, "with -beside: the instance beside gets relay-only subscribers and this one direct ones (-beside may name the same binary): relayed media's cost against direct, measured at the same time")
	fs.IntVar(&c.Cap, "cap", c.Cap, "capped: the capped receiver's downlink in kbit/s")
	fs.DurationVar(&c.CapFor, "cap-for", c.CapFor, "capped: how long the receiver stays capped before the cap is lifted")
	fs.BoolVar(&c.Dynacast, "dynacast", c.Dynacast, "simulcast, dynacast: the publisher stops the layers the server says nobody needs, as browsers do; false sends all three anyway")
}

func (cl *commandLine) defineShape(fs *flag.FlagSet) {
	c := &cl.cfg
	fs.IntVar(&c.Subscribers, "subscribers", c.Subscribers, "fanout, simulcast, dynacast and floor: receivers of the one publisher")
	fs.IntVar(&c.Rooms, "rooms", c.Rooms, "meeting (and floor): rooms; 0 with floor means the fanout shape")
	fs.IntVar(&c.Participants, "participants", c.Participants, "meeting: participants per room, all publishing")
	fs.IntVar(&c.Cycles, "cycles", c.Cycles, "churn: joins (each one a join, media exchange and leave)")
	fs.IntVar(&c.Parallel, "parallel", c.Parallel, "churn: participants in the room at once")
	fs.DurationVar(&c.Hold, "hold", c.Hold, "churn: how long each participant stays after its first media")
	fs.IntVar(&c.Flaps, "flaps", c.Flaps, "churn: network flaps of each participant after its first media (signaling reset, resume, ICE restart)")
	fs.DurationVar(&c.Timing.Warmup, "warmup", c.Timing.Warmup, "media time after every join before the window opens")
	fs.DurationVar(&c.Timing.Window, "duration", c.Timing.Window, "the measured window")
	fs.DurationVar(&c.Timing.Grace, "grace", c.Timing.Grace, "wait for in-flight packets after the window; what is missing then is loss")
}

func (cl *commandLine) defineCapacity(fs *flag.FlagSet) {
	c := &cl.cfg
	fs.Func("shapes", "capacity: the shapes to search, comma-separated: "+strings.Join(c.Shapes, ", ")+" (default all)", func(s string) error {
		c.Shapes = splitList(s)
		return nil
	})
	fs.IntVar(&c.CapacityStart, "start", c.CapacityStart, "capacity: the first step, in participants (a meeting's rounded up to whole rooms)")
	fs.IntVar(&c.CapacityMax, "max", c.CapacityMax, "capacity: the ceiling, in participants: a search that holds up to it reports 'at least'")
	fs.DurationVar(&c.CapacityP99, "max-p99", c.CapacityP99, "capacity: a step holds with no loss and its p99 forwarding latency under this")
}

func (cl *commandLine) defineMedia(fs *flag.FlagSet) {
	m := &cl.cfg.Media
	fs.IntVar(&m.VideoKbps, "video-kbps", m.VideoKbps, "video bitrate per publisher, kbit/s (3520 with 1100-byte packets is 400 packets/s); 0 for audio only")
	fs.IntVar(&m.VideoPacket, "video-packet", m.VideoPacket, "video RTP payload bytes")
	fs.IntVar(&m.FPS, "fps", m.FPS, "video frames per second (RTP timestamps and markers)")
	fs.IntVar(&m.AudioPacket, "audio-packet", m.AudioPacket, "audio (Opus) RTP payload bytes")
	fs.IntVar(&m.AudioPPS, "audio-pps", m.AudioPPS, "audio packets per second (50 = 20 ms frames); 0 for video only")
}

// resolve fills in what the flags leave to the process: the instances
// from -url or -urls, the secrets from the environment, and this binary
// as the floor's relay.
func (cl *commandLine) resolve(tf targetFlags) error {
	c := &cl.cfg
	if err := tf.resolve(c); err != nil {
		return err
	}
	if c.APIKey == "" && c.APISecret == "" {
		c.APIKey, c.APISecret = os.Getenv("MEDIA_API_KEY"), os.Getenv("MEDIA_API_SECRET")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable for the floor relay: %w", err)
	}
	c.RelayExe = exe
	return nil
}

func (tf targetFlags) resolve(c *load.Config) error {
	if tf.urls == "" {
		if tf.opsURLs != "" {
			return errors.New("-ops-urls goes with -urls; with -url, use -ops-url")
		}
		c.URLs, c.OpsURLs = []string{tf.url}, nil
		if tf.opsURL != "" {
			c.OpsURLs = []string{tf.opsURL}
		}
		return nil
	}
	switch {
	case tf.set["url"]:
		return errors.New("-url and -urls exclude each other")
	case tf.set["ops-url"]:
		return errors.New("with -urls, name the instances' ops listeners with -ops-urls")
	}
	c.URLs, c.OpsURLs = splitList(tf.urls), splitList(tf.opsURLs)
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
