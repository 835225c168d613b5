// Command media-service runs one edge instance of the media server, or
// mints an access token for it.
//
//	media-service [serve]                     run the instance (configured from the environment)
//	media-service token -room R -identity I   print an access token
//	media-service help                        print the usage
//
// It exits 0 on success and after printing the usage it was asked for
// (-h, -help, help), 2 on a usage error (an unknown command or flag), and
// 1 on any other error, a bad configuration value among them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// usage is the top-level help. The instance takes no flags: every setting
// is an environment variable, documented where the variables are.
const usage = `Usage:
  media-service [serve]       run an instance until SIGINT or SIGTERM, then drain it
  media-service token -room R -identity I [-ttl 1h] [-publish=true] [-subscribe=true]
                              print an access token for a participant
  media-service help          print this help

serve takes no flags: it is configured by environment variables (PORT,
MEDIA_*, the standard OTEL_* and Fly.io's FLY_*), each listed with its default
in README.md, section "Configuration". A bad value stops the start with a
message that names the variable. Without MEDIA_API_SECRET the instance runs in
dev mode: insecure, for local use only.

token signs with MEDIA_API_KEY and MEDIA_API_SECRET, as the instance checks;
"media-service token -h" lists its flags.
`

// errUsage marks an error in how the command was called: its message and
// the usage have been printed, and the exit code is 2, as for flag errors.
var errUsage = errors.New("usage error")

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "media-service:", err)
		os.Exit(1)
	}
}

// run dispatches the subcommand. It is main without the process exit: it
// returns flag.ErrHelp once the usage asked for is printed, and an error
// wrapping errUsage for a call it does not understand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if err := serveArgs(args, stdout, stderr); err != nil {
			return err
		}
		return serve(ctx, stdout)
	case "token":
		return token(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return flag.ErrHelp
	default:
		return usageError(stderr, usage, "unknown command %q (want serve, token or help)", cmd)
	}
}

// serveArgs checks that serve is given no arguments but a request for
// help, so a mistyped flag never starts an instance.
func serveArgs(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return err
	case err != nil:
		return usageError(stderr, usage, "%v", err)
	case fs.NArg() > 0:
		return usageError(stderr, usage, "serve takes no arguments, got %q", fs.Args())
	}
	return nil
}

// usageError prints what is wrong and the usage to stderr, and returns
// an error wrapping errUsage.
func usageError(stderr io.Writer, usage, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(stderr, "media-service: %s\n\n%s", msg, usage)
	return fmt.Errorf("%w: %s", errUsage, msg)
}
