// Command media-service runs one edge instance of the media server, or
// mints an access token for it.
//
//	media-service [serve]                 run the instance (configured from the environment)
//	media-service token -room R -identity I   print an access token
package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "media-service:", err)
		os.Exit(1)
	}
}

// run dispatches the subcommand. It is main without the process exit.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, stdout)
	case "token":
		return token(args, stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q (want serve or token)", cmd)
	}
}
