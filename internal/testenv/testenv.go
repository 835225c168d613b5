// Package testenv decides what a test does when the machine lacks
// something it needs (a browser, promtool, an IPv6 loopback): skip it
// locally, so a developer's run stays green on a bare machine, but fail it
// under CI=true, where a skipped test would pass a build that nothing
// checked. .ci/run sets CI=true and installs what the tests need.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where every
// capability a test needs must be present.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing ends the test because the machine lacks a capability: a skip
// with the message locally, a failure under CI=true. The message should
// say what is missing and how to get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true: a missing capability fails the run)", msg)
	} else {
		t.Skip(msg)
	}
}
