package load

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// Light subscribers (-light): a subscriber connection whose media is
// taken at its UDP socket, before Pion. It joins, runs ICE and DTLS and
// negotiates with Pion as a full one does, and the first packets of each
// stream go through Pion's SRTP and track reader as usual: the reader
// reads the stamp of one of them and anchors the stream (its RTP
// sequence number against the source's own). From then on every SRTP
// packet of that SSRC is read at the socket: its cleartext header gives
// the SSRC, the sequence number and the transport-wide sequence number,
// the packet is accounted in the participant's sink under the source
// sequence the anchor maps it to (so loss is counted against the same
// window as a full subscriber's, packet by packet), and Pion never sees
// it: no SRTP decryption, no interceptors, no track buffer, no read.
// STUN, DTLS and SRTCP go to Pion unchanged. A relay-only subscriber
// (-relay) reads its media from the TURN relay as ChannelData: the light
// receiver takes the SRTP packet inside, and leaves everything else (a
// Data indication, ChannelData around SRTCP or STUN) to Pion's TURN
// client.
//
// Towards the server a light subscriber behaves as a browser does for
// congestion control: it records every RTP packet's transport-wide
// sequence number and arrival time and sends transport-wide feedback on
// its subscriber connection every 100 ms, as Pion's TWCC sender does for
// a full one (whose API has that interceptor; a light one's has not, so
// nothing is reported twice). After the anchor it sends no NACK (its
// Pion NACK generator sees no more packets), and its receiver reports
// (Pion's) stop advancing at the anchor. The server reads no receiver
// reports from subscribers, and NACKs only matter when packets are lost.

// twccFeedbackInterval is how often a light subscriber sends
// transport-wide feedback: Pion's TWCC sender interceptor's default.
const twccFeedbackInterval = 100 * time.Millisecond

// lightSub is the socket-side receiver of one light participant: every
// UDP socket of its API reads through it. The ICE agent reads each socket
// on one goroutine; anchors come from the track readers and the feedback
// from its own loop, so the state is under mu.
type lightSub struct {
	clk   clock
	sink  *sink
	start time.Time // base of the arrival times given to the recorder
	sub   atomic.Pointer[webrtc.PeerConnection]
	tccID atomic.Uint32 // the transport-cc header extension's id; 0 not known yet
	taken atomic.Uint64 // media packets read at the socket

	mu      sync.Mutex // guards streams, rec
	streams map[uint32]*lightStream
	rec     *twcc.Recorder
}

// lightStream maps one SSRC's RTP sequence numbers onto its source's,
// from an anchor read through Pion: lastRTP is the newest RTP sequence
// number seen and lastSrc the source sequence it stands for. Padding
// (probes) takes RTP sequence numbers but no source sequence.
type lightStream struct {
	src     *source
	lastRTP uint16
	lastSrc uint32
}

func newLightSub(clk clock, k *sink) *lightSub {
	return &lightSub{clk: clk, sink: k, start: time.Now(), streams: make(map[uint32]*lightStream), rec: twcc.NewRecorder(rand.Uint32())}
}

// attach names the subscriber connection feedback goes on and whose
// description gives the transport-cc extension id.
func (l *lightSub) attach(pc *webrtc.PeerConnection) { l.sub.Store(pc) }

// anchor maps ssrc's RTP sequence rtpSeq to src's sequence srcSeq: from
// then on the stream is read at the socket. The first anchor stands.
func (l *lightSub) anchor(ssrc uint32, rtpSeq uint16, src *source, srcSeq uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams[ssrc] == nil {
		l.streams[ssrc] = &lightStream{src: src, lastRTP: rtpSeq, lastSrc: srcSeq}
	}
}

// take accounts one datagram read at the socket at clock time now and
// reports whether it was a media packet Pion must not see. Until the
// transport-cc id is known everything goes to Pion, so no packet taken
// is missing from the feedback.
func (l *lightSub) take(b []byte, now int64) bool {
	id := l.transportCC()
	if id == 0 {
		return false
	}
	h, ok := parseSRTPHeader(channelData(b), id)
	if !ok {
		return false
	}
	l.mu.Lock()
	if h.hasTCC {
		l.rec.Record(h.ssrc, h.tcc, time.Since(l.start).Microseconds())
	}
	st := l.streams[h.ssrc]
	if st == nil {
		l.mu.Unlock()
		return false // to Pion, until its reader anchors the stream
	}
	src, seq, media := st.advance(h)
	l.mu.Unlock()
	if media {
		l.taken.Add(1)
		l.sink.observeLight(src, seq, now)
	}
	return true
}

// advance maps h's sequence number to the source's and reports whether h
// is media (not a padding-only probe). Within half the sequence space of
// the newest packet, an older one (reordered) maps back as well.
func (st *lightStream) advance(h srtpHeader) (*source, uint32, bool) {
	d := int16(h.seq - st.lastRTP)
	if h.padding {
		if d > 0 {
			st.lastRTP = h.seq // a probe takes the number, not a source sequence
		}
		return nil, 0, false
	}
	seq := uint32(int64(st.lastSrc) + int64(d))
	if d > 0 {
		st.lastRTP, st.lastSrc = h.seq, seq
	}
	return st.src, seq, true
}

// noTransportCC marks a subscriber connection whose description has no
// transport-cc extension: the light receiver then takes nothing (without
// feedback the server would not serve it as it serves a browser).
const noTransportCC = 0xff

// transportCC is the transport-cc extension's id, read once from the
// subscriber connection's remote description; 0 while there is none, or
// when it has no such extension.
func (l *lightSub) transportCC() uint8 {
	switch id := l.tccID.Load(); id {
	case noTransportCC:
		return 0
	case 0: // not read yet
	default:
		return uint8(id)
	}
	pc := l.sub.Load()
	if pc == nil {
		return 0
	}
	d := pc.RemoteDescription()
	if d == nil {
		return 0
	}
	id := uint32(transportCCID(d.SDP))
	if id == 0 {
		id = noTransportCC
	}
	l.tccID.Store(id)
	return l.transportCC()
}

// transportCCID finds the id of the transport-wide sequence number
// extension in an SDP (0: none).
func transportCCID(s string) uint8 {
	for line := range strings.Lines(s) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "a=extmap:")
		if !ok {
			continue
		}
		id, uri, ok := strings.Cut(rest, " ")
		if !ok || strings.TrimSpace(uri) != sdp.TransportCCURI {
			continue
		}
		id, _, _ = strings.Cut(id, "/") // a direction may follow the id
		if n, err := strconv.ParseUint(id, 10, 8); err == nil && n >= 1 && n <= 14 {
			return uint8(n)
		}
	}
	return 0
}

// feedback sends transport-wide feedback on the subscriber connection
// every twccFeedbackInterval until done is closed.
func (l *lightSub) feedback(done <-chan struct{}) {
	tick := time.NewTicker(twccFeedbackInterval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		pc := l.sub.Load()
		l.mu.Lock()
		pkts := l.rec.BuildFeedbackPacket()
		l.mu.Unlock()
		if pc != nil && len(pkts) > 0 {
			_ = pc.WriteRTCP(pkts) // a closed connection ends with done
		}
	}
}

// channelData is the datagram a TURN ChannelData message b carries (RFC
// 8656 section 12.4: a first byte 64 to 79, RFC 7983, then the channel
// number's low byte, the length, the datagram), or b itself when b is not
// one or its length does not fit.
func channelData(b []byte) []byte {
	if len(b) < 4 || b[0] < 64 || b[0] > 79 {
		return b
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if 4+n > len(b) {
		return b
	}
	return b[4 : 4+n]
}

// srtpHeader is what a light subscriber reads of an SRTP packet: its
// cleartext header.
type srtpHeader struct {
	ssrc    uint32
	seq     uint16
	padding bool   // the P bit: our publishers never pad, so a padded packet is a probe
	tcc     uint16 // transport-wide sequence number, when hasTCC
	hasTCC  bool
}

// parseSRTPHeader reads b's RTP header when b is RTP (RFC 7983: first
// byte 128-191, and RFC 5761: second byte not an RTCP type 192-223).
// tccID is the transport-cc extension's id (0: not read).
func parseSRTPHeader(b []byte, tccID uint8) (srtpHeader, bool) {
	var h srtpHeader
	if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
		return h, false
	}
	h.padding = b[0]&0x20 != 0
	h.seq = binary.BigEndian.Uint16(b[2:4])
	h.ssrc = binary.BigEndian.Uint32(b[8:12])
	off := 12 + 4*int(b[0]&0x0f)
	if off > len(b) {
		return h, false
	}
	if b[0]&0x10 == 0 || tccID == 0 {
		return h, true
	}
	h.tcc, h.hasTCC = findTCC(b[off:], tccID)
	return h, true
}

// findTCC finds extension id in the header extension block x (its
// profile, length and elements; RFC 8285 one- and two-byte forms) and
// reads it as a transport-wide sequence number.
func findTCC(x []byte, id uint8) (uint16, bool) {
	if len(x) < 4 {
		return 0, false
	}
	profile, n := binary.BigEndian.Uint16(x[0:2]), 4*int(binary.BigEndian.Uint16(x[2:4]))
	if 4+n > len(x) {
		return 0, false
	}
	el := x[4 : 4+n]
	oneByte := profile == 0xBEDE
	if !oneByte && profile&0xFFF0 != 0x1000 {
		return 0, false
	}
	for i := 0; i < len(el); {
		if el[i] == 0 { // padding between elements
			i++
			continue
		}
		var eid uint8
		var l int
		if oneByte {
			eid, l = el[i]>>4, int(el[i]&0x0f)+1
			if eid == 15 {
				return 0, false
			}
			i++
		} else {
			if i+1 >= len(el) {
				return 0, false
			}
			eid, l = el[i], int(el[i+1])
			i += 2
		}
		if i+l > len(el) {
			return 0, false
		}
		if eid == id && l >= 2 {
			return binary.BigEndian.Uint16(el[i : i+2]), true
		}
		i += l
	}
	return 0, false
}

// lightNet is the transport.Net of one light participant's API: the
// host's network (or base's), whose UDP sockets read through l.
type lightNet struct {
	transport.Net
	l *lightSub
}

// newLightNet wraps base (nil: the host's network) for l.
func newLightNet(base transport.Net, l *lightSub) (*lightNet, error) {
	if base == nil {
		n, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("light subscriber: network: %w", err)
		}
		base = n
	}
	return &lightNet{Net: base, l: l}, nil
}

// ListenUDP opens a UDP socket whose reads go through the light receiver.
func (n *lightNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &lightConn{UDPConn: c, l: n.l}, nil
}

// ListenPacket is ListenUDP for the UDP networks.
func (n *lightNet) ListenPacket(network, address string) (net.PacketConn, error) {
	if !strings.HasPrefix(network, "udp") {
		return n.Net.ListenPacket(network, address)
	}
	addr, err := n.Net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, err
	}
	return n.ListenUDP(network, addr)
}

// lightConn is a UDP socket of a light participant: ReadFrom keeps what
// the light receiver takes from Pion. The ICE agent reads with ReadFrom.
type lightConn struct {
	transport.UDPConn
	l *lightSub
}

// ReadFrom returns the next datagram the light receiver does not take.
func (c *lightConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(p)
		if err != nil || !c.l.take(p[:n], c.l.clk.now()) {
			return n, addr, err
		}
	}
}
