//go:build !linux || !(amd64 || arm64)

package mmsg

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// MaxBatch is the most datagrams one Sender.Send takes.
const MaxBatch = 64

// Sender is Linux's raw sendmmsg (mmsg_linux.go); elsewhere there is none
// and the callers send with x/net.
type Sender struct{}

// NewSender returns nil: no raw sendmmsg here.
func NewSender(*net.UDPConn) *Sender { return nil }

// Send is never called: NewSender made no Sender.
func (*Sender) Send([]ipv4.Message) (int, error) { panic("mmsg: no raw sendmmsg here") }

// Single is Linux's raw sendto (mmsg_linux.go); elsewhere the callers
// send with net.
type Single struct{}

// NewSingle returns nil: no raw sendto here.
func NewSingle(*net.UDPConn) *Single { return nil }

// WriteToAddrPort is never called: NewSingle made no Single.
func (*Single) WriteToAddrPort([]byte, netip.AddrPort) (int, bool, error) {
	panic("mmsg: no raw sendto here")
}

// Receiver is Linux's raw recvfrom reader (mmsg_linux.go); elsewhere the
// callers read the socket as it is.
type Receiver struct{}

// NewReceiver returns nil: no raw reads here.
func NewReceiver(*net.UDPConn) *Receiver { return nil }

// ReadFromAddrPort is never called: NewReceiver made no Receiver.
func (*Receiver) ReadFromAddrPort([]byte) (int, netip.AddrPort, error) {
	panic("mmsg: no raw reads here")
}
