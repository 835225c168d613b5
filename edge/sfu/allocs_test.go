//go:build linux

package sfu

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/media-service/media-service/internal/testenv"
)

// directTrack is a subscriber's track writer with Pion's interceptors
// taken out: what remains is the connection's directWriter, at the
// bottom of its chain, which encrypts each packet with the
// subscriber's SRTP context and writes it to the engine's batchConn (the
// ICE mux's socket) for the subscriber's address. So the encryption, the
// fan-out's held writes and the sendmmsg that flushes them are on the
// measured path. Below the writer's interceptor, pionWrite stands in for
// Pion's path: a context of the same keys that sends to the same address
// what the writer leaves to it (the packets that keep both contexts'
// rollover counts in step), or drops it while pionOff (Pion's SRTP
// session not started yet).
type directTrack struct {
	w       *directWriter
	ic      interceptor.Interceptor
	out     interceptor.RTPWriter
	ssrc    uint32 // the stream's, as bound at the bottom of the chain
	pion    *srtp.Context
	to      netip.AddrPort
	buf     []byte
	viaPion int // packets pion sent
	// viaTrack counts the packets written through the track's writer,
	// as Pion's wrapper would pass them, not to the stream straight.
	viaTrack int
	pionOff  bool
}

func (d *directTrack) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	d.viaTrack++
	return d.out.Write(h, payload, nil)
}

func (d *directTrack) pionWrite(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	if d.pionOff {
		return 0, nil
	}
	d.viaPion++
	n, err := marshalRTP(d.buf, h, payload)
	if err != nil {
		return 0, err
	}
	out, err := d.pion.EncryptRTP(d.buf[n:n], d.buf[:n], nil)
	if err != nil {
		return 0, err
	}
	return d.w.sock.WriteToAddrPort(out, d.to)
}

func (d *directTrack) Write([]byte) (int, error) {
	return 0, errors.New("directTrack: raw writes are not forwarded")
}

// newDirectTrack is a directTrack of a test direct writer routed to to.
func newDirectTrack(t *testing.T, conn *batchConn, to netip.AddrPort) *directTrack {
	return newDirectTrackKeys(t, conn, to, gcmTestKeys)
}

// newDirectTrackKeys is newDirectTrack with the profile and keys of k.
func newDirectTrackKeys(t *testing.T, conn *batchConn, to netip.AddrPort, k testKeys) *directTrack {
	t.Helper()
	pion, err := srtp.CreateContext(k.key, k.salt, k.profile)
	if err != nil {
		t.Fatalf("CreateContext() = %v", err)
	}
	d := &directTrack{w: testDirectWriterKeys(t, conn, to, k), pion: pion, to: to, buf: make([]byte, 2*directBufSize)}
	i, err := d.w.NewInterceptor("")
	if err != nil {
		t.Fatalf("NewInterceptor() = %v", err)
	}
	d.ic = i
	d.out = i.BindLocalStream(&interceptor.StreamInfo{}, interceptor.RTPWriterFunc(d.pionWrite))
	return d
}

// rebind binds the track's stream to the writer again, as a new stream
// under the same SSRC.
func (d *directTrack) rebind() { d.bindAs(d.ssrc) }

// bindAs binds the track's stream to the writer again under ssrc.
func (d *directTrack) bindAs(ssrc uint32) {
	d.ic.UnbindLocalStream(&interceptor.StreamInfo{SSRC: d.ssrc})
	d.ssrc = ssrc
	d.out = d.ic.BindLocalStream(&interceptor.StreamInfo{SSRC: ssrc}, interceptor.RTPWriterFunc(d.pionWrite))
}

// testKey and testSalt are the SRTP master key and salt of the test
// subscribers' direct writers (AES-128-GCM: 16 and 12 bytes).
var testKey, testSalt = bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{9}, 12)

// testKeys is an SRTP profile and master keys of test writers.
type testKeys struct {
	profile   srtp.ProtectionProfile
	key, salt []byte
}

// gcmTestKeys are testKey and testSalt's, and cmTestKeys of the profile
// that is not AEAD (its salt is 14 bytes).
var (
	gcmTestKeys = testKeys{srtp.ProtectionProfileAeadAes128Gcm, testKey, testSalt}
	cmTestKeys  = testKeys{srtp.ProtectionProfileAes128CmHmacSha1_80, testKey, bytes.Repeat([]byte{9}, 14)}
)

// testDirectWriterKeys is a directWriter with the profile and keys of k,
// routed to to.
func testDirectWriterKeys(t *testing.T, conn *batchConn, to netip.AddrPort, k testKeys) *directWriter {
	t.Helper()
	w := newDirectWriter(conn, newRTCPRouter(), slog.New(slog.DiscardHandler))
	if err := w.setKeys(k.profile, k.key, k.salt); err != nil {
		t.Fatalf("setKeys() = %v", err)
	}
	w.ready.Store(true)
	w.route.Store(&to)
	return w
}

// TestForwardDoesNotAllocate holds README's "zero allocations per
// forwarded packet in our own path": parsing, the NACK history, the
// per-subscriber header rewrite, the counters, the SRTP encryption of
// each copy and the batched send (hold, held writes, sendmmsg) over a
// real UDP socket on loopback. Pion's interceptors (sender reports) are
// not ours and are left out. 100 subscribers take two sendmmsg calls per packet.
//
// Under -race it is skipped: the race detector's sync.Pool drops one Put
// in four on purpose, so x/net's pooled sendmmsg headers are allocated
// again now and then. .ci/run runs it without -race.
func TestForwardDoesNotAllocate(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("sync.Pool drops pooled objects under -race; .ci/run runs this test without it")
	}
	for _, n := range []int{1, 10, 50, 100} {
		t.Run(fmt.Sprintf("subs=%d", n), func(t *testing.T) {
			p, peers := socketPublication(t, n)
			pkt := videoPacket(t)
			var h rtp.Header
			seq := uint16(0)
			forward := func() {
				seq++
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				p.forward(p.layer(0), pkt, &h)
			}
			if got := testing.AllocsPerRun(200, forward); got != 0 {
				t.Errorf("allocations per forwarded packet to %d subscribers = %v; want 0", n, got)
			}
			// The sends were real: the last packet reached every
			// subscriber, encrypted with its key.
			for _, peer := range peers {
				drain(t, peer)
			}
			forward()
			seen := map[uint32]bool{}
			for i, peer := range peers {
				for _, d := range receive(t, peer, min(n-i*subsPerPeer, subsPerPeer)) {
					seen[decrypt(t, d).SSRC] = true
				}
			}
			if len(seen) != n {
				t.Errorf("subscribers that received the packet = %d; want %d", len(seen), n)
			}
		})
	}
}

// TestSimulcastForwardDoesNotAllocate holds the same for a simulcast
// publication whose subscribers switch layer on every round: the target
// changes (SetMaxLayer, which asks for a keyframe on the new layer), each
// layer sends a packet, the new one a keyframe, and every subscriber
// switches to it, its sequence number, timestamp and VP8 picture ID
// rewritten (the payload copied to do so).
func TestSimulcastForwardDoesNotAllocate(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("sync.Pool drops pooled objects under -race; .ci/run runs this test without it")
	}
	for _, n := range []int{1, 50} {
		t.Run(fmt.Sprintf("subs=%d", n), func(t *testing.T) {
			p, peers := socketPublicationLayers(t, n, maxLayers)
			subs := *p.subs.Load()
			var pkts [maxLayers][2][]byte // by layer: delta, keyframe
			for l := range pkts {
				for k := range pkts[l] {
					f := vp8Frame{layer: l, seq: uint16(1000 * l), ts: uint32(l) * 7777, pic: uint16(l) * 100, key: k == 1}
					pkts[l][k] = f.marshal(t)
					pkts[l][k] = append(pkts[l][k], make([]byte, 1000)...) // a realistic size
				}
			}
			var h rtp.Header
			round := 0
			forward := func() {
				round++
				target := round % maxLayers
				for _, s := range subs {
					s.SetMaxLayer(target)
				}
				for l := range pkts {
					key := 0
					if l == target {
						key = 1
					}
					pkt := pkts[l][key]
					seq := uint16(1000*l + round)
					pkt[2], pkt[3] = byte(seq>>8), byte(seq)
					ts := uint32(l)*7777 + uint32(round)*3000
					pkt[4], pkt[5], pkt[6], pkt[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
					p.forward(p.layer(l), pkt, &h)
				}
			}
			for _, peer := range peers {
				drain(t, peer)
			}
			if got := testing.AllocsPerRun(200, forward); got != 0 {
				t.Errorf("allocations per round of 3 layers to %d switching subscribers = %v; want 0", n, got)
			}
			for _, s := range subs {
				if got, want := s.CurrentLayer(), round%maxLayers; got != want {
					t.Fatalf("subscriber on layer %d after the last round; want %d", got, want)
				}
			}
			if got := p.engine.metrics.layerPackets[0].Load(); got == 0 {
				t.Error("no packet forwarded from layer 0")
			}
		})
	}
}

// subsPerPeer is how many subscribers share one receiving socket: the
// datagrams of one packet to all of them fit its default receive buffer.
const subsPerPeer = 25

// socketPublication is benchPublication whose n subscribers are
// receiving sockets on 127.0.0.1 (subscriber i on peers[i/subsPerPeer]),
// written through a batchConn.
func socketPublication(t *testing.T, n int) (*Publication, []*net.UDPConn) {
	t.Helper()
	return socketPublicationLayers(t, n, 1)
}

// socketPublicationLayers is socketPublication with simulcast layers.
func socketPublicationLayers(t *testing.T, n, layers int) (*Publication, []*net.UDPConn) {
	t.Helper()
	conn, _ := newTestBatchConn(t, "127.0.0.1:0")
	if conn.batch == nil {
		t.Fatal("no batching on Linux: the batched send is not measured")
	}
	p := layeredPublication(t, n, layers)
	p.engine.udpConn = conn
	var peers []*net.UDPConn
	for i, s := range *p.subs.Load() {
		if i%subsPerPeer == 0 {
			peers = append(peers, udpPeer(t))
		}
		to := peers[len(peers)-1].LocalAddr().(*net.UDPAddr).AddrPort()
		// As a subscriber connection's: the stream bound at the bottom
		// of the chain under the binding's SSRC, where the subscription
		// finds it (Subscription.write).
		ssrc := uint32(1000 + i)
		d := newDirectTrack(t, conn, to)
		d.bindAs(ssrc)
		s.setConn(&SubscriberConn{bw: newBandwidth(p.engine.metrics, nil), direct: d.w})
		s.bound.Store(&binding{ssrc: ssrc, pt: 96, w: d})
	}
	return p, peers
}

// drain reads what is queued on c, until it stays empty for a moment.
func drain(t *testing.T, c *net.UDPConn) {
	t.Helper()
	buf := make([]byte, 2048)
	for {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(buf); errors.Is(err, os.ErrDeadlineExceeded) {
			return
		} else if err != nil {
			t.Fatal(err)
		}
	}
}

// decrypt is a received SRTP datagram of a test direct writer, decrypted
// and parsed.
func decrypt(t *testing.T, d []byte) *rtp.Packet {
	t.Helper()
	ctx, err := srtp.CreateContext(testKey, testSalt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatalf("CreateContext() = %v", err)
	}
	plain, err := ctx.DecryptRTP(nil, d, nil)
	if err != nil {
		t.Fatalf("DecryptRTP(a forwarded datagram) = %v", err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(plain); err != nil {
		t.Fatalf("a decrypted datagram is not RTP: %v", err)
	}
	return &p
}

// TestSubscriptionRTCPDoesNotAllocate: a subscriber's compound RTCP of a
// report and transport-wide feedback (what it sends every 100 ms or so)
// costs its subscriptions no parse and no allocation: only keyframe
// requests and NACKs are theirs to read. Before, every subscription of
// the connection parsed the feedback, the largest share of the
// instance's allocations in a fan-out.
func TestSubscriptionRTCPDoesNotAllocate(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("sync.Pool drops pooled objects under -race; .ci/run runs this test without it")
	}
	p, _ := socketPublication(t, 1)
	s := (*p.subs.Load())[0]
	raw, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, LastSequenceNumber: 100}}},
		&rtcp.TransportLayerCC{
			SenderSSRC: 1, MediaSSRC: 2, BaseSequenceNumber: 10, PacketStatusCount: 2, FbPktCount: 1,
			PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 2}},
			RecvDeltas:   []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}, {Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 500}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := testing.AllocsPerRun(100, func() { s.onRTCP(raw) }); got != 0 {
		t.Errorf("allocations per report and feedback = %v; want 0", got)
	}
}
