//go:build !linux || !(amd64 || arm64)

package turn

import (
	"errors"
	"net"
)

// relayLoop is Linux's event loop over the relayed sockets
// (relayloop_linux.go); elsewhere each allocation's socket is read by
// Pion's reader, and there is no loop.
type relayLoop struct{}

func newRelayLoop(*batchWriter) (*relayLoop, error) { return nil, nil }

func (*relayLoop) start()                 {}
func (*relayLoop) close()                 {}
func (*relayLoop) adopt(*relayConn) error { return nil }

func (*relayLoop) listen(string, int) (net.PacketConn, error) {
	return nil, errors.ErrUnsupported
}
