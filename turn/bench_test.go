package turn

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// BenchmarkRelayWrite is the relayed socket's per-datagram path from
// client to peer: the policy check by address and port, the write, the
// byte count.
func BenchmarkRelayWrite(b *testing.B) {
	sink, err := net.ListenUDP("udp4", loopback(0))
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	s := &Server{policy: newPeerPolicy([]net.Addr{sink.LocalAddr()}, nil, nil, nil)}
	m, err := newMetrics(noopMeter(), func(string) int { return 0 }, nil)
	if err != nil {
		b.Fatal(err)
	}
	s.metrics = m
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	rc := &relayConn{PacketConn: pc, s: s, transport: transportUDP, bytes: m.bytes[transportUDP]}
	payload := make([]byte, 1200)
	dst := sink.LocalAddr()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rc.WriteTo(payload, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPermitAddr is the policy decision alone, for an own address
// (the common case) and a refused one (the full range scan).
func BenchmarkPermitAddr(b *testing.B) {
	p := newPeerPolicy([]net.Addr{&net.UDPAddr{IP: net.ParseIP("203.0.113.7"), Port: 7882}}, nil, nil,
		[]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")})
	for _, tt := range []struct{ name, addr string }{{"own", "203.0.113.7:7882"}, {"refused", "[fd00::1]:7882"}} {
		ap := netip.MustParseAddrPort(tt.addr)
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.permitAddr(ap)
			}
		})
	}
}

// BenchmarkRelayRoundTrip is one datagram from a Pion TURN client through
// the relay to the media socket and its echo back, over each client
// transport, and over UDP with the media socket connected in memory
// (handoff): the whole per-packet cost of relayed media, both ways.
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, c := range []struct {
		name, transport string
		handoff         bool
	}{{transportUDP, transportUDP, false}, {transportTCP, transportTCP, false}, {"udp-handoff", transportUDP, true}} {
		b.Run(c.name, func(b *testing.B) {
			var r *testRelay
			var peer net.Addr
			if c.handoff {
				var sfu *sfuEcho
				r, sfu = startHandoffRelay(b)
				peer = sfu.sw.Media().LocalAddr()
			} else {
				r = startRelay(b, func(*Config) {})
				peer = r.media.LocalAddr()
			}
			relayed, err := allocate(b, r, c.transport, "bench")
			if err != nil {
				b.Fatal(err)
			}
			for i := range 3 { // permission and channel bind
				echo(b, relayed, peer, fmt.Sprintf("warm %d", i))
			}
			payload := make([]byte, 1200)
			buf := make([]byte, 1500)
			b.SetBytes(int64(2 * len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := relayed.WriteTo(payload, peer); err != nil {
					b.Fatal(err)
				}
				if _, _, err := relayed.ReadFrom(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
