package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"
)

// config is one run's command line. Secrets may also come from the
// environment (MEDIA_API_KEY, MEDIA_API_SECRET), as the server reads them,
// so they stay out of shell history and process listings.
type config struct {
	scenario string

	url       string // the instance's HTTP base URL
	opsURL    string // its ops listener (/metrics); empty: no server numbers
	apiKey    string
	apiSecret string
	devToken  bool   // ask the instance's /v1/dev/token instead of minting
	spawn     string // a media-service binary to start (dev mode, free ports) for the run

	subscribers int // fanout
	rooms       int // meeting
	perRoom     int // meeting
	cycles      int // churn
	parallel    int // churn
	hold        time.Duration

	media           mediaConfig
	timing          timing
	floor           bool
	floorBatch      bool
	joinConcurrency int
	joinTimeout     time.Duration
	settle          time.Duration
	maxLoss         float64 // percent
	jsonOut         bool
	quiet           bool
	nack            bool
	cpuProfile      string // write the load generator's own CPU profile here

	floorOpts floorOptions // how to start the floor relay child (not a flag)
}

var scenarios = map[string]string{
	"fanout":  "one publisher (audio+video) to -subscribers receivers in one room",
	"meeting": "-rooms rooms of -participants participants, every one publishing audio+video",
	"churn":   "-parallel participants at a time join, exchange media for -hold, and leave, -cycles times",
	"floor":   "only the bare UDP relay floor, with the fanout or meeting shape; no server",
}

func parseFlags(name string, args []string, stderr io.Writer) (config, error) {
	if _, ok := scenarios[name]; !ok {
		return config{}, usageError{fmt.Sprintf("unknown scenario %q (want fanout, meeting, churn or floor)", name)}
	}
	c := config{scenario: name, media: defaultMedia()}
	fs := flag.NewFlagSet("mediaload "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "mediaload %s: %s\n\nflags:\n", name, scenarios[name])
		fs.PrintDefaults()
	}
	c.define(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	if err := c.validate(); err != nil {
		return c, usageError{err.Error()}
	}
	fo, err := defaultFloorOptions()
	fo.batch = c.floorBatch
	c.floorOpts = fo
	return c, err
}

func (c *config) define(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "the instance's HTTP base URL (signaling is at /v1/rtc)")
	fs.StringVar(&c.opsURL, "ops-url", "http://127.0.0.1:9091", "the instance's ops base URL, scraped at /metrics for CPU, memory and goroutines; empty to skip")
	fs.StringVar(&c.apiKey, "api-key", "", "API key that signs tokens (default $MEDIA_API_KEY; with no secret the public dev pair is used)")
	fs.StringVar(&c.apiSecret, "api-secret", "", "API secret (default $MEDIA_API_SECRET, which -h never prints)")
	fs.BoolVar(&c.devToken, "dev-token", false, "fetch tokens from the instance's /v1/dev/token (dev mode) instead of minting them")
	fs.StringVar(&c.spawn, "spawn", "", "start this media-service binary in dev mode on free ports for the run (overrides -url and -ops-url)")
	fs.IntVar(&c.subscribers, "subscribers", 50, "fanout and floor: receivers of the one publisher")
	fs.IntVar(&c.rooms, "rooms", 0, "meeting (and floor): rooms; 0 with floor means the fanout shape")
	fs.IntVar(&c.perRoom, "participants", 5, "meeting: participants per room, all publishing")
	fs.IntVar(&c.cycles, "cycles", 100, "churn: joins (each one a join, media exchange and leave)")
	fs.IntVar(&c.parallel, "parallel", 4, "churn: participants in the room at once")
	fs.DurationVar(&c.hold, "hold", time.Second, "churn: how long each participant stays after its first media")
	fs.IntVar(&c.media.VideoKbps, "video-kbps", c.media.VideoKbps, "video bitrate per publisher, kbit/s (3520 with 1100-byte packets is 400 packets/s); 0 for audio only")
	fs.IntVar(&c.media.VideoPacket, "video-packet", c.media.VideoPacket, "video RTP payload bytes")
	fs.IntVar(&c.media.FPS, "fps", c.media.FPS, "video frames per second (RTP timestamps and markers)")
	fs.IntVar(&c.media.AudioPacket, "audio-packet", c.media.AudioPacket, "audio (Opus) RTP payload bytes")
	fs.IntVar(&c.media.AudioPPS, "audio-pps", c.media.AudioPPS, "audio packets per second (50 = 20 ms frames); 0 for video only")
	fs.DurationVar(&c.timing.warmup, "warmup", 3*time.Second, "media time after every join before the window opens")
	fs.DurationVar(&c.timing.window, "duration", 20*time.Second, "the measured window")
	fs.DurationVar(&c.timing.grace, "grace", 2*time.Second, "wait for in-flight packets after the window; what is missing then is loss")
	fs.BoolVar(&c.floorBatch, "floor-batch", false, "the floor relay sends each packet's copies with sendmmsg instead of one sendto each (a yardstick for batched writes, not the floor)")
	fs.BoolVar(&c.floor, "floor", true, "also measure the bare UDP relay floor in this run, with the same shape")
	fs.IntVar(&c.joinConcurrency, "join-concurrency", 10, "joins in flight at once")
	fs.DurationVar(&c.joinTimeout, "join-timeout", 15*time.Second, "a join that has no media by then failed")
	fs.DurationVar(&c.settle, "settle", 10*time.Second, "churn: how long to wait for the server's goroutines to return to the baseline after the last leave")
	fs.Float64Var(&c.maxLoss, "max-loss", 1, "fail the run when loss exceeds this percentage")
	fs.BoolVar(&c.jsonOut, "json", false, "write the report as JSON on stdout")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file (to check it is not the bottleneck)")
	fs.BoolVar(&c.nack, "nack", true, "participants ask for retransmission of lost video packets (NACK), as browsers do")
}

func (c *config) validate() error {
	if c.apiKey == "" && c.apiSecret == "" {
		c.apiKey, c.apiSecret = os.Getenv("MEDIA_API_KEY"), os.Getenv("MEDIA_API_SECRET")
	}
	if err := c.media.validate(); err != nil {
		return err
	}
	if c.spawn == "" {
		if u, err := url.Parse(c.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-url must be an http(s) URL, got %q", c.url)
		}
	}
	if c.apiSecret != "" && c.apiKey == "" {
		return errors.New("-api-key is required with -api-secret")
	}
	switch {
	case c.subscribers < 1 || c.subscribers > 1000:
		return fmt.Errorf("-subscribers must be from 1 to 1000, got %d", c.subscribers)
	case c.rooms < 0 || c.rooms > 100:
		return fmt.Errorf("-rooms must be from 0 to 100, got %d", c.rooms)
	case c.scenario == "meeting" && c.rooms == 0:
		return errors.New("meeting: -rooms must be at least 1")
	case c.perRoom < 2 || c.perRoom > 100:
		return fmt.Errorf("-participants must be from 2 to 100, got %d", c.perRoom)
	case c.cycles < 1:
		return fmt.Errorf("-cycles must be at least 1, got %d", c.cycles)
	case c.parallel < 1 || c.parallel > 100:
		return fmt.Errorf("-parallel must be from 1 to 100, got %d", c.parallel)
	case c.timing.window <= 0 || c.timing.warmup < 0 || c.timing.grace < 0:
		return errors.New("-duration must be positive, -warmup and -grace not negative")
	case c.joinConcurrency < 1:
		return fmt.Errorf("-join-concurrency must be at least 1, got %d", c.joinConcurrency)
	case c.joinTimeout <= 0:
		return fmt.Errorf("-join-timeout must be positive, got %s", c.joinTimeout)
	case c.maxLoss < 0:
		return fmt.Errorf("-max-loss must not be negative, got %g", c.maxLoss)
	}
	return nil
}

// shape is the scenario's topology, which the floor reproduces.
func (c *config) shape() topology {
	if c.scenario == "meeting" || (c.scenario == "floor" && c.rooms > 0) {
		t := make(topology, c.rooms)
		for i := range t {
			t[i] = group{publishers: c.perRoom}
		}
		return t
	}
	return topology{{publishers: 1, listeners: c.subscribers}}
}
