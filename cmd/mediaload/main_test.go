package main

import (
	"context"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/media-service/media-service/internal/load"
)

// TestMain lets the test binary act as mediaload itself when a run starts
// it as its floor relay (`TESTBINARY floor-relay`): run takes os.Executable
// as the relay, which in a test is this binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == load.FloorRelayCommand {
		if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString("mediaload (test child): " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
