//go:build !faulthang

package edge

import "github.com/pion/webrtc/v4"

// closePeer closes one of a session's PeerConnections. A build with the
// faulthang tag (tests only: closepeer_faulthang.go) makes it hang, so the
// binary's tests can show the drain watchdog ending a process that a stuck
// close would otherwise hold.
func closePeer(pc *webrtc.PeerConnection) error { return pc.Close() }
