package web_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain ends the shared Chromium, checks that no test left a goroutine
// behind (the browser suite runs log readers and DevTools connections), and
// removes the service binary the browser tests build.
func TestMain(m *testing.M) {
	code := m.Run()
	stopChromium()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	removeServiceBinary()
	os.Exit(code)
}
