package load

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain lets the test binary act as mediaload's floor relay child:
// started as `TESTBINARY floor-relay`, as a run starts Config.RelayExe, it
// serves the relay instead of running the tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == FloorRelayCommand {
		if err := ServeFloorRelay(os.Args[2:], os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString("floor relay (test child): " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// testExe is the test binary, the relay child of the tests' floors.
func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable() = %v", err)
	}
	return exe
}

// testFloorOptions starts the test binary as the relay child.
func testFloorOptions(t *testing.T, batch bool) floorOptions {
	t.Helper()
	return floorOptions{exe: testExe(t), batch: batch, stderr: os.Stderr}
}
