package web_test

import (
	"testing"

	"github.com/media-service/media-service/internal/servicetest"
)

// TestMain ends the shared Chromium, checks that no test left a goroutine
// behind (the browser suite runs log readers and DevTools connections), and
// removes the service binary the browser tests build.
func TestMain(m *testing.M) { servicetest.Main(m, stopChromium) }
