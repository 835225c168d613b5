package sfu

import (
	"io"

	"github.com/pion/transport/v5/packetio"
)

// Bounds of the queues Pion keeps between its SRTP session and the
// readers of a subscriber connection.
const (
	// rtcpQueueBytes bounds the RTCP queued for one sender. Audio
	// subscriptions have no reader (subscribers send them nothing to act
	// on but receiver reports), so their queue only fills and drops: at
	// Pion's 100 KB each it would hold 100 KB per audio subscription for
	// nothing. 16 KiB still holds hundreds of NACKs for a video reader.
	rtcpQueueBytes = 16 << 10
	// rtpQueueBytes is Pion's own bound; subscriber connections receive
	// no RTP.
	rtpQueueBytes = 1000 * 1000
)

// subscriberQueues is the SettingEngine.BufferFactory of subscriber
// connections.
func subscriberQueues(t packetio.BufferPacketType, _ uint32) io.ReadWriteCloser {
	b := packetio.NewBuffer()
	if t == packetio.RTCPBufferPacket {
		b.SetLimitSize(rtcpQueueBytes)
	} else {
		b.SetLimitSize(rtpQueueBytes)
	}
	return queue{b}
}

// queue adapts packetio.Buffer to the reader and writer SRTP expects,
// with or without packet attributes.
type queue struct{ *packetio.Buffer }

func (q queue) Read(p []byte) (int, error) {
	n, _, err := q.Buffer.Read(p, nil)
	return n, err
}

func (q queue) Write(p []byte) (int, error) { return q.Buffer.Write(p, nil) }

func (q queue) ReadWithAttributes(p []byte, a packetio.Attributes) (int, packetio.Attributes, error) {
	return q.Buffer.Read(p, a)
}

func (q queue) WriteWithAttributes(p []byte, a packetio.Attributes) (int, error) {
	return q.Buffer.Write(p, a)
}
