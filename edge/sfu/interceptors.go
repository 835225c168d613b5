package sfu

import (
	"fmt"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
)

// Interceptors, by the direction they serve. Each one that Pion builds
// for a PeerConnection may start a goroutine with a ticker, so a
// connection gets only those of the direction it serves.
//
// Receiving (publisher connections, receivingInterceptors):
//   - NACK generator: asks publishers for packets lost on their way to us;
//     made with the connection's first stream (lazyFactory), as most
//     publisher connections never receive one;
//   - RTCP receiver reports, so publishers see loss and RTT;
//   - TWCC feedback for the publishers' bandwidth estimation.
//
// Sending (subscriber connections): none of Pion's. Each connection has
// its own directInterceptor (added by newSubscriberAPI), which encrypts
// RTP and writes it to the socket without Pion's SRTP session and ICE
// layers (directwrite.go) and sends the RTCP sender reports subscribers
// need for lip sync (senderreport.go), counting as it writes rather
// than in an interceptor of its own with a clock read per packet.
// Forwarded packets go to its writer straight (Subscription.write), not
// through the chain: an interceptor added before it would not see them.
//
// There is no NACK responder interceptor: it would keep a copy of every
// packet per subscriber. Publications keep one shared buffer instead and
// answer subscribers' NACKs from it (packethistory.go). The stats interceptor
// is left out too: it costs per packet and we export our own metrics.

// maxNacksPerPacket bounds how often a publisher is asked for one lost
// packet (one NACK per 100 ms tick): Pion's default asks until the packet
// leaves its 512-packet log, over a second of requests for a packet that
// may be gone for good.
const maxNacksPerPacket = 5

// receivingInterceptors are the publisher connections' interceptors.
func receivingInterceptors(logs pionLogs) ([]interceptor.Factory, error) {
	gen, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(logs),
		nack.GeneratorMaxNacksPerPacket(maxNacksPerPacket))
	if err != nil {
		return nil, fmt.Errorf("sfu: nack generator: %w", err)
	}
	recv, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(logs))
	if err != nil {
		return nil, fmt.Errorf("sfu: receiver reports: %w", err)
	}
	fb, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(logs))
	if err != nil {
		return nil, fmt.Errorf("sfu: twcc feedback: %w", err)
	}
	return []interceptor.Factory{lazyFactory{factory: gen}, recv, fb}, nil
}

// registry makes an interceptor registry of the given factories.
func registry(factories []interceptor.Factory) *interceptor.Registry {
	r := &interceptor.Registry{}
	for _, f := range factories {
		r.Add(f)
	}
	return r
}
