package sfu

import (
	"io"

	"github.com/pion/transport/v5/packetio"
)

// rtpQueueBytes bounds the RTP a subscriber connection queues per SSRC:
// Pion's own bound. Such a connection receives no RTP; its RTCP goes to
// the rtcpRouter instead of a queue.
const rtpQueueBytes = 1000 * 1000

// subscriberQueues makes the RTP queues of subscriber connections.
func subscriberQueues(_ packetio.BufferPacketType, _ uint32) io.ReadWriteCloser {
	b := packetio.NewBuffer()
	b.SetLimitSize(rtpQueueBytes)
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
