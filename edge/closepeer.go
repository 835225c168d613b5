//go:build !faulthang

package edge

import "io"

// closePeer closes one of a session's PeerConnections. A build with the
// faulthang tag (tests only: closepeer_faulthang.go) makes it hang, so the
// binary's tests can show the drain watchdog ending a process that a stuck
// close would otherwise hold.
func closePeer(pc io.Closer) error { return pc.Close() }
