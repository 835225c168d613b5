// Command mediaload is the load generator of media-service: synthetic
// participants built on Pion that speak the signaling protocol against a
// running instance, send paced audio and video whose payloads carry a send
// time and sequence number, and measure joins, loss, forwarding latency and
// the server's CPU, memory and goroutines (from its ops /metrics). In the
// same run it measures the floor, a bare UDP relay doing the same fan-out
// with batched sends (sendmmsg, as the server), and reports the server's
// CPU per forwarded packet as a multiple of it.
//
//	mediaload fanout  -subscribers 50 [flags]            1 publisher to N subscribers
//	mediaload meeting -rooms 2 -participants 5 [flags]   every participant publishes
//	mediaload churn   -cycles 2000 -parallel 4 [flags]   join, exchange media, leave, repeatedly
//	mediaload floor   -subscribers 50 [flags]            the bare relay alone, no server
//	mediaload capacity -spawn BIN -gomaxprocs 1 [flags]  the most one instance carries (fanout, meetings of 5 and 10)
//	mediaload fanout -spawn NEW -beside OLD [flags]      two builds at the same time, their CPU per packet compared
//	mediaload fanout -spawn B -beside B -beside-relay    relay-only subscribers beside direct ones, at the same time
//
// A run targets one instance (-url, or -spawn to start one), or several
// (-urls, with -placement and -ops-urls): the report then counts the joins
// through each instance and the redirects they followed.
//
// `mediaload -h` and `mediaload SCENARIO -h` list the flags. The exit status
// is 1 when the run failed (a join failed, loss above -max-loss, the server
// could not be reached), 2 for bad flags. The work is done by package
// internal/load; this command only turns the command line into its Config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/media-service/media-service/internal/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "mediaload:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "mediaload:", err)
		os.Exit(1)
	}
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errFailed is returned when the run completed but did not meet its own
// pass conditions; the report says why.
var errFailed = errors.New("run failed (see the report)")

// run dispatches the subcommand. It is main without the process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	name, args, ok := scenarioFirst(args)
	if !ok {
		return usageError{"want a scenario: fanout, meeting, churn, floor, simulcast, dynacast, capped or capacity (mediaload SCENARIO -h for flags)"}
	}
	if name == load.FloorRelayCommand {
		return load.ServeFloorRelay(args, stdin, stdout)
	}
	cl, err := parseFlags(name, args, stderr)
	if err != nil {
		return err
	}
	stopProfile, err := startProfile(cl.cpuProfile)
	if err != nil {
		return err
	}
	cl.cfg.ChildStderr = stderr
	var progress io.Writer
	if !cl.quiet {
		progress = stderr
	}
	rep, ok, err := runScenario(ctx, cl, progress)
	stopProfile()
	if err != nil {
		return err
	}
	if err := rep.Write(stdout, cl.jsonOut); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if !ok {
		return errFailed
	}
	return nil
}

// reporter is what a run reports: one instance's figures, or two
// builds' side by side (-beside).
type reporter interface {
	Write(w io.Writer, asJSON bool) error
}

// runScenario runs the command line's scenario, with -beside a second
// build beside the first, and reports whether the run passed.
func runScenario(ctx context.Context, cl commandLine, progress io.Writer) (reporter, bool, error) {
	if cl.beside != "" {
		r, err := load.RunBeside(ctx, cl.cfg, cl.beside, progress)
		if err != nil {
			return nil, false, err
		}
		return r, r.OK, nil
	}
	r, err := load.Run(ctx, cl.cfg, progress)
	if err != nil {
		return nil, false, err
	}
	return r, r.OK, nil
}

// scenarioFirst finds the scenario among args, so flags may come before
// it (`mediaload -spawn BIN fanout -subscribers 50`, as `just load` runs
// it), and returns it with the other arguments in their order. Without a
// known scenario the first argument is taken, to be refused by name.
func scenarioFirst(args []string) (name string, rest []string, ok bool) {
	for i, a := range args {
		if _, known := load.Describe(a); known || a == load.FloorRelayCommand {
			rest = append(append([]string{}, args[:i]...), args[i+1:]...)
			return a, rest, true
		}
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, false
	}
	return args[0], args[1:], true
}

// startProfile starts the load generator's own CPU profile when path is
// set; the returned stop writes it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
