//go:build !linux || !(amd64 || arm64)

package turn

import (
	"net"

	"golang.org/x/net/ipv4"
)

// mmsgSend is Linux's raw sendmmsg (sendbatch_linux.go); elsewhere
// x/net's WriteBatch sends the batches.
type mmsgSend struct{}

func newMmsgSend(*net.UDPConn) *mmsgSend { return nil }

func (*mmsgSend) send([]ipv4.Message) (int, error) { panic("turn: no raw sendmmsg here") }
