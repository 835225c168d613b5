package mmsg

import (
	"net"

	"golang.org/x/net/ipv4"
)

// Writer sends batches on one socket: with a raw Sender where there is
// one, through x/net's WriteBatch elsewhere. Like a Sender, it has one
// caller at a time.
type Writer struct {
	raw *Sender
	pc  *ipv4.PacketConn
}

// NewWriter sends batches on c.
func NewWriter(c *net.UDPConn) *Writer {
	return &Writer{raw: NewSender(c), pc: ipv4.NewPacketConn(c)}
}

// SendAll sends msgs, each one buffer to a *net.UDPAddr, in as few calls
// as the kernel takes, and returns how many it refused: a datagram the
// kernel refuses (or the socket's family cannot carry) is skipped, so
// one bad destination costs only itself.
func (w *Writer) SendAll(msgs []ipv4.Message) (refused int) {
	for sent := 0; sent < len(msgs); {
		var k int
		var err error
		if w.raw != nil {
			k, err = w.raw.Send(msgs[sent:])
		} else {
			k, err = w.pc.WriteBatch(msgs[sent:], 0)
		}
		if err != nil || k <= 0 { // sendmmsg fails only when its first datagram does
			refused++
			k = 1
		}
		sent += k
	}
	return refused
}
