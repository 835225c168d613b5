//go:build faulthang

package edge

import "io"

// closePeer never returns: this build stands in for a PeerConnection close
// that hangs (a DTLS or ICE close stuck on the network, a bug in a
// dependency), the fault the drain watchdog exists for. Only
// cmd/media-service's watchdog test builds with the faulthang tag.
func closePeer(io.Closer) error {
	select {}
}
