//go:build !linux || !(amd64 || arm64)

package turn

import (
	"net"
	"net/netip"
)

// batchReader is Linux's recvmmsg reader; elsewhere the socket is read
// one datagram at a time.
type batchReader struct{}

func newBatchReader(net.PacketConn) *batchReader { return nil }

func (*batchReader) readFrom([]byte) (int, netip.AddrPort, net.Addr, error) {
	panic("turn: no batch reads here")
}
