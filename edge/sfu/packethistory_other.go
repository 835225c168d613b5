//go:build !linux

package sfu

// ringAlloc returns n zeroed bytes for a NACK history from the heap:
// mapping it outside the heap is done on Linux only (packethistory_linux.go).
func ringAlloc(n int) (b []byte, mapped bool) { return make([]byte, n), false }

// ringFree releases b from ringAlloc: the collector does it.
func ringFree([]byte, bool) {}
