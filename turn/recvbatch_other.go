//go:build !linux || !(amd64 || arm64)

package turn

import "net"

// batchReader is Linux's recvmmsg reader; elsewhere the socket is read
// one datagram at a time.
type batchReader struct{}

func newBatchReader(net.PacketConn) *batchReader { return nil }

func (*batchReader) ReadFrom([]byte) (int, net.Addr, error) { panic("turn: no batch reads here") }
