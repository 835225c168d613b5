package main

import (
	"context"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// childEnv makes the test binary act as mediaload itself, so tests can
// start the floor relay as the real child process it is in a run.
const childEnv = "MEDIALOAD_TEST_AS_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString("mediaload (test child): " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// testFloorOptions starts the test binary as the relay child.
func testFloorOptions(t *testing.T) floorOptions {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable() = %v", err)
	}
	return floorOptions{exe: exe, env: []string{childEnv + "=1"}}
}
