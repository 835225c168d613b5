package web_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind (the browser
// suite runs log readers and DevTools connections), and removes the
// service binary the browser tests build.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeServiceBinary()
		os.Exit(code)
	}))
}
