package telemetry

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine they started (the
// leak detector's Run, the OTLP exporter's HTTP client, the instance under
// test) is still running at the end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
