package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"go.opentelemetry.io/otel"

	"github.com/media-service/media-service/edge"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/webhook"
	"github.com/media-service/media-service/internal/envconfig"
	"github.com/media-service/media-service/telemetry"
	"github.com/media-service/media-service/turn"
)

// watchdogMargin is how long past the drain timeout the process may take to
// close what is left before the watchdog ends it.
const watchdogMargin = 5 * time.Second

// flushTimeout bounds the meter provider's final flush.
const flushTimeout = 5 * time.Second

// version is the service.version resource attribute on every metric, set at
// build time: go build -ldflags "-X main.version=v1.2.3" ./cmd/media-service
var version = telemetry.DefaultVersion

// config is every package's configuration, each parsed from the environment.
type config struct {
	edge      edge.Config
	fleet     fleet.Config
	media     sfu.Config
	telemetry telemetry.Config
	turn      turn.Config
	webhook   webhook.Config
}

// loadConfig parses every package's configuration from environ, fills
// in the defaults derived from procs (the process's GOMAXPROCS: the
// capacity it carries) and validates all of it, so that a bad value stops
// the start before anything is logged or bound, with one line that names
// its variable.
func loadConfig(environ map[string]string, procs int) (config, error) {
	var c config
	for _, p := range []any{&c.edge, &c.telemetry, &c.media, &c.turn, &c.fleet, &c.webhook} {
		if err := envconfig.Parse(p, environ); err != nil {
			return c, err
		}
	}
	c.edge.DeriveDefaults(procs)
	checks := []func() error{c.edge.Validate, c.telemetry.Validate, c.media.Validate, c.fleet.Validate, c.webhook.Validate}
	if c.turn.Enabled {
		checks = append(checks, c.turn.Validate)
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// serve runs the instance until SIGINT or SIGTERM, then drains it.
func serve(ctx context.Context, stdout io.Writer) error {
	procs := runtime.GOMAXPROCS(0)
	cfg, err := loadConfig(env.ToMap(os.Environ()), procs)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.telemetry.LogLevel})).With("service", telemetry.ServiceName)
	log.Info("capacity", "gomaxprocs", procs, "session_capacity", edge.SessionCapacity(procs), "max_sessions", cfg.edge.MaxSessions)
	gcPercent, gcFrom := tuneGC()
	log.Info("gc_target", "percent", gcPercent, "from", gcFrom)
	if cfg.edge.DevMode() {
		log.Warn("dev_mode_insecure", "detail", "DEV MODE: no MEDIA_API_SECRET set; anyone can mint tokens with the public dev key pair. Never run this on the internet.")
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("otel_error", "err", err) }))
	hostname, _ := os.Hostname() // service.instance.id off Fly; empty if unknown
	tel, err := telemetry.New(ctx, cfg.telemetry, telemetry.Options{Log: log, Version: version, Hostname: hostname})
	if err != nil {
		return err
	}
	meter := tel.Meter("media-service")
	media, err := sfu.New(cfg.media, meter, log)
	if err != nil {
		return err
	}
	relay, err := newRelay(cfg.turn, log, meter, media)
	if err != nil {
		_ = media.Close()
		return err
	}
	fl, err := openFleet(ctx, cfg.fleet, log, meter)
	if err != nil {
		if relay != nil {
			_ = relay.Close()
		}
		_ = media.Close()
		return err
	}
	defer fl.stop()
	hooks, err := newWebhooks(cfg, log, meter)
	if err != nil {
		if relay != nil {
			_ = relay.Close()
		}
		_ = media.Close()
		return err
	}
	defer closeWebhooks(hooks, cfg.webhook.DrainTimeout)
	srv, err := edge.New(cfg.edge, edge.Options{Log: log, Meter: meter, Metrics: tel.Handler(), Media: media, Relay: edgeRelay(relay), Fleet: fl.directory(edge.SessionCapacity(procs)), Webhooks: hooks})
	if err != nil {
		if relay != nil {
			_ = relay.Close()
		}
		_ = media.Close()
		return err
	}
	defer runRelay(relay, log)()
	fl.run()
	// Sessions and forwarded tracks explain goroutines; see telemetry.Load.
	leaks, err := telemetry.NewLeakDetector(cfg.telemetry, meter, func() telemetry.Load {
		return telemetry.Load{Sessions: srv.Sessions().Len(), Tracks: media.Tracks()}
	})
	if err != nil {
		srv.Close()
		return err
	}
	if err := telemetry.RegisterInstance(meter, telemetry.InstanceState{Draining: srv.Draining, MaxSessions: cfg.edge.MaxSessions, MaxConns: cfg.edge.MaxConns}); err != nil {
		srv.Close()
		return err
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	// The watchdog covers the drain, the closing of what is left and the
	// final metrics flush, so a slow collector cannot turn a clean drain
	// into a watchdog exit.
	watchdog := cfg.edge.DrainTimeout + watchdogMargin + flushTimeout
	if hooks != nil { // and the delivery of the last webhooks
		watchdog += cfg.webhook.DrainTimeout
	}
	go handleSignals(runCtx, cancel, done, srv, log, watchdog)
	leakDone := make(chan struct{})
	go func() { defer close(leakDone); leaks.Run(runCtx) }()

	runErr := srv.Run(runCtx)
	cancel(nil)
	<-leakDone
	closeWebhooks(hooks, cfg.webhook.DrainTimeout) // the drain's last events
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), flushTimeout)
	defer cancelFlush()
	if err := tel.Shutdown(flushCtx); err != nil {
		log.Warn("telemetry_flush_failed", "err", err)
	}
	return runErr
}

// handleSignals turns the first SIGINT or SIGTERM into a drain (cancelling
// the run context with its cause), arms the watchdog, and turns a second
// signal into an immediate close.
func handleSignals(ctx context.Context, cancel context.CancelCauseFunc, done <-chan struct{}, srv *edge.Server, log *slog.Logger, watchdog time.Duration) {
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	select {
	case sig := <-sigc:
		cancel(&edge.ShutdownCause{Reason: "signal", Signal: signalName(sig)})
	case <-ctx.Done():
	case <-done:
		return
	}
	t := time.AfterFunc(watchdog, func() {
		log.Error("drain_watchdog_expired", "after", watchdog.String())
		os.Exit(2)
	})
	defer t.Stop()
	select {
	case sig := <-sigc:
		log.Warn("second_signal_skipping_drain_wait", "signal", signalName(sig))
		srv.Close()
		<-done
	case <-done:
	}
}

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}
