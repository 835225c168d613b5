package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"go.opentelemetry.io/otel"

	"github.com/media-service/media-service/edge"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/edge/sfu"
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
}

func loadConfig() (config, error) {
	var c config
	if err := parseEnv(&c.edge); err != nil {
		return c, err
	}
	if err := parseEnv(&c.telemetry); err != nil {
		return c, err
	}
	if err := parseEnv(&c.media); err != nil {
		return c, err
	}
	if err := parseEnv(&c.turn); err != nil {
		return c, err
	}
	if err := parseEnv(&c.fleet); err != nil {
		return c, err
	}
	return c, c.fleet.Validate()
}

// parseEnv fills one package's Config from the environment. A value that
// does not parse stops the start with an error that names the variable,
// not the Go field.
func parseEnv[T any](cfg *T) error {
	err := env.Parse(cfg)
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("config: %w", err)
	}
	t := reflect.TypeFor[T]()
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			msgs = append(msgs, e.Error())
			continue
		}
		name := pe.Name
		if f, ok := t.FieldByName(pe.Name); ok {
			name, _, _ = strings.Cut(f.Tag.Get("env"), ",")
		}
		msgs = append(msgs, fmt.Sprintf("%s: %v", name, pe.Err))
	}
	return fmt.Errorf("config: %s", strings.Join(msgs, "; "))
}

// serve runs the instance until SIGINT or SIGTERM, then drains it.
func serve(ctx context.Context, stdout io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stdout, nil)).With("service", telemetry.ServiceName)
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
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
	srv, err := edge.New(cfg.edge, edge.Options{Log: log, Meter: meter, Metrics: tel.Handler(), Media: media, Relay: edgeRelay(relay), Fleet: fl.directory()})
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
	go handleSignals(runCtx, cancel, done, srv, log, cfg.edge.DrainTimeout+watchdogMargin+flushTimeout)
	leakDone := make(chan struct{})
	go func() { defer close(leakDone); leaks.Run(runCtx) }()

	runErr := srv.Run(runCtx)
	cancel(nil)
	<-leakDone
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
