package edge

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// session, socket and timer the instance starts must end with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
