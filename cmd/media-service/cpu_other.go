//go:build !unix

package main

import "time"

// processCPU cannot say on this platform: placement weighs the session
// and room bounds alone.
func processCPU() (time.Duration, bool) { return 0, false }
