package sfu

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// rtcpTaps takes the subscribers' RTCP off Pion's receive path. Every
// datagram a subscriber sends reaches the media socket's one reader,
// Pion's UDP mux, which hands it to the connection's ICE connection,
// whose goroutine hands it to the DTLS/SRTP mux, whose goroutine hands
// it to the SRTCP session, whose goroutine decrypts it and gives it to
// the connection's rtcpRouter: three goroutines woken per feedback
// packet, ten or more packets a second per subscriber. A tap reads it
// on the mux's reader instead (batchConn.ReadFromAddrPort): it finds the
// connection by the datagram's source, the address its direct write
// path sends to, decrypts it with the connection's own SRTCP context
// (the receiving keys come from the same handshake as the sending ones,
// directWriter.derive) and delivers it to the same router, the same way
// Pion's session would have.
//
// Pion's ICE agent must still see the connection's traffic now and
// then: it counts a pair alive by what it received on it. So one RTCP
// datagram a second (passEvery) goes Pion's way, preferably one with no
// transport-wide feedback in it (its order against the tapped ones
// does not matter), and Pion's session decrypts and delivers it as
// before; the agent's own consent checks go its way too, as everything
// that is not RTCP from a tapped address does.
//
// A datagram the tap cannot decrypt goes Pion's way, which fails it as
// it always did; SRTCP packets carry their own index, so the two
// contexts need not see the same packets (unlike SRTP's, see
// directWriter).
type rtcpTaps struct {
	mu sync.RWMutex
	by map[netip.AddrPort]*directWriter
}

// passEvery is how often a tapped connection's RTCP goes Pion's way
// (preferably one without transport-wide feedback), and passAnyAfter
// how long it may wait for one before any goes: Pion's ICE agent takes
// a pair for disconnected after MEDIA_ICE_DISCONNECTED_TIMEOUT (5 s by
// default) with nothing received, and its consent checks every
// MEDIA_ICE_KEEPALIVE (2 s) count too.
const (
	passEvery    = time.Second
	passAnyAfter = 2 * time.Second
)

// set makes w the tap of from, replacing whichever was.
func (t *rtcpTaps) set(from netip.AddrPort, w *directWriter) {
	t.mu.Lock()
	if t.by == nil {
		t.by = make(map[netip.AddrPort]*directWriter)
	}
	t.by[from] = w
	t.mu.Unlock()
}

// remove removes w as the tap of from, if it still is.
func (t *rtcpTaps) remove(from netip.AddrPort, w *directWriter) {
	t.mu.Lock()
	if t.by[from] == w {
		delete(t.by, from)
	}
	t.mu.Unlock()
}

// take handles p, read from the address from, when it is RTCP from a
// tapped subscriber, reporting whether it did (the caller then drops
// it). It runs on the socket's one reader, and on the relay's goroutines
// for what they hand over (handoff.Conn.SetTap).
func (t *rtcpTaps) take(p []byte, from netip.AddrPort) bool {
	// RTP and RTCP share the port (RFC 5761): RTCP's packet types 192
	// to 223 are what RTP's marker bit and payload types 64 to 95 would
	// read as, which no one negotiates. STUN, DTLS and TURN's channel
	// data do not start with version 2.
	if len(p) < 8 || p[0]>>6 != 2 || p[1] < 192 || p[1] > 223 {
		return false
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) // a dual-stack socket's IPv4 senders
	t.mu.RLock()
	w := t.by[from]
	t.mu.RUnlock()
	return w != nil && w.tap.take(p)
}

// rtcpTap is the receiving half of a directWriter: its SRTCP context
// and what it decrypts into. The socket's reader uses it, and for a
// relayed subscriber the relay's goroutine that hands its datagrams over
// (handoff.Conn.SetTap); mu keeps the two apart should both ever have
// one of its datagrams.
type rtcpTap struct {
	ctx    atomic.Pointer[srtp.Context] // nil until the handshake gave the keys
	router *rtcpRouter

	mu     sync.Mutex // guards buf, hdr, passed
	buf    []byte
	hdr    rtcp.Header
	passed time.Time // when a packet last went Pion's way

	took, left atomic.Uint64 // datagrams delivered, and left to Pion once decrypted
}

// take decrypts p and delivers it to the router, or leaves it to Pion's
// path (false): when it cannot decrypt it, and once per passEvery.
func (r *rtcpTap) take(p []byte) bool {
	ctx := r.ctx.Load()
	if ctx == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out, err := ctx.DecryptRTCP(r.buf[:0], p, &r.hdr)
	if err != nil {
		return false
	}
	now := time.Now()
	if since := now.Sub(r.passed); since >= passAnyAfter || (since >= passEvery && !hasTransportFeedback(out)) {
		r.passed = now
		r.left.Add(1)
		return false // Pion decrypts its own copy, p, with its own context
	}
	r.router.deliverCompound(out)
	r.took.Add(1)
	return true
}

// hasTransportFeedback reports whether the compound RTCP packet b holds
// transport-wide feedback (RTPFB, FMT 15).
func hasTransportFeedback(b []byte) bool {
	for len(b) >= 4 {
		if rtcp.PacketType(b[1]) == rtcp.TypeTransportSpecificFeedback && b[0]&0x1f == rtcp.FormatTCC {
			return true
		}
		n := (int(b[2])<<8|int(b[3]))*4 + 4 // the length counts 32-bit words, less one
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return false
}
