package sfu

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// directWriter is a subscriber connection's own RTP write path. Pion's
// takes every copy of a fan-out through its SRTP session (a pooled
// buffer, a lock and a map lookup), the DTLS/SRTP mux endpoint, the ICE
// connection, its selected candidate pair and the UDP mux before it
// reaches our socket; this one encrypts the packet with the connection's
// own SRTP context and hands it straight to the socket's batch
// (batchConn), on the fan-out's goroutine.
//
// It sits at the bottom of the connection's interceptor chain, so every
// RTP write of the connection passes it: forwarded media, NACK
// retransmissions and probe padding alike, after the sender-report
// interceptor has counted them. It takes a packet when it has both:
//
//   - the keys. Pion does not expose them, but the DTLS handshake gives
//     what RFC 5764 derives them from: the key log (the master secret
//     and the client's random) and, when the server is the DTLS server,
//     its own ServerHello (its random, the cipher suite and the SRTP
//     profile chosen). The subscriber answers our offer, and browsers
//     and Pion answer as the DTLS client, so the server is the DTLS
//     server on these connections. Otherwise there are no keys, and
//     Pion's path carries everything, as before.
//   - a route: the remote address of the ICE pair Pion selected, when
//     its local side is a UDP candidate (our UDP mux, the only UDP
//     socket). A pair over ICE-TCP leaves the packets to Pion's path.
//     The route follows every change of the selected pair (ICE
//     restarts, renomination) and is dropped when ICE fails or closes.
//
// A packet not taken goes down Pion's path, which encrypts with its own
// context for the same keys. Each path counts the rollovers of an
// SSRC's sequence numbers (the ROC, RFC 3711) from the packets it sees
// (this writer in a rolloverCount per SSRC, which seals its packets, with
// its own AEAD sealing or its Pion context alike), and guesses right only
// across a gap of under 32768 numbers; so a stream that moved from one
// path to the other (an ICE restart between UDP and ICE-TCP) after the
// other had not seen it for longer would be sent under the wrong rollover
// count, and fail the subscriber's authentication from then on. Both
// paths therefore see every stream's first packet and one every syncEvery
// numbers after it: this writer counts it, and Pion sends it. One packet
// in 8192 goes Pion's way, whatever the route. Until
// Pion has sent a stream's first such packet (its SRTP session starts a
// moment after the handshake that gave this writer its keys, and drops
// what comes before), every packet of the stream goes Pion's way; this
// writer's count of the stream then starts again from the packet Pion's
// started from.
//
// When the subscriber's answer declares it can receive RTP header
// extensions encrypted (RFC 9335 Cryptex, a=cryptex), Pion's path
// encrypts them, and so does this one (setCryptex): the subscriber gets
// what it negotiated either way.
//
// The key log is asked for by this writer only and never written
// anywhere: the master secret is used once, to derive the SRTP keys,
// and dropped.
type directWriter struct {
	sock *batchConn

	// hello is our ServerHello's part of the key derivation, set on the
	// DTLS handshake goroutine before the key log line that completes it.
	helloMu sync.Mutex
	hello   *serverHello

	route atomic.Pointer[netip.AddrPort] // nil: no UDP pair selected
	ready atomic.Bool                    // ctx is set

	// tap reads the subscriber's RTCP from the socket (rtcptap.go), at
	// tapped, the route's address, while there is a route.
	tap      rtcpTap
	tapMu    sync.Mutex // guards tapped and the tap's place in sock.taps
	tapped   netip.AddrPort
	tapClose bool // the connection closed: no more taps

	// mu guards the encryption: ctx, seal's changes, rocs, buf and hdr;
	// the streams' state; and bySSRC. The read loops of the connection's
	// publications write concurrently.
	mu      sync.Mutex
	ctx     *srtp.Context
	seal    atomic.Pointer[rtpSealer] // an AEAD profile's sealing without ctx; nil: ctx seals (atomic for warm, which holds no lock)
	rocs    map[uint32]*rolloverCount // per SSRC, the count each packet is sealed under
	cryptex srtp.CryptexMode          // what the subscriber's answer negotiated
	buf     []byte                    // the packet, marshaled then encrypted in place, when the batch lends no buffer (batchConn.reserve)
	hdr     rtp.Header                // EncryptRTP parses the header into it
	streams []*sendStream             // the bound streams, for their sender reports
	bySSRC  map[uint32]*directStream  // the bound streams' writers (Subscription.write)
	counted map[uint32]bool           // SSRCs whose count restarted with Pion's (pionSent)

	reports senderReports

	log *slog.Logger
}

// directBufSize holds any packet the fan-out writes (a publisher's packet
// is at most readBufSize, and the rewritten header adds at most the
// transport-cc extension) plus the SRTP tag (16 bytes for AES-GCM).
const directBufSize = 2048

// serverHello is what the key derivation needs from our ServerHello.
type serverHello struct {
	random  [handshake.RandomLength]byte
	suite   dtls.CipherSuiteID
	profile srtp.ProtectionProfile
}

func newDirectWriter(sock *batchConn, router *rtcpRouter, log *slog.Logger) *directWriter {
	w := &directWriter{sock: sock, buf: make([]byte, directBufSize), log: log}
	w.tap.router, w.tap.buf = router, make([]byte, directBufSize)
	return w
}

// settings hooks w into the DTLS handshake of the connection se makes.
func (w *directWriter) settings(se *webrtc.SettingEngine) {
	se.SetDTLSServerHelloMessageHook(w.serverHello)
	se.SetDTLSKeyLogWriter(keyLog{w})
}

// watch follows pc's selected ICE pair and state for the route.
func (w *directWriter) watch(pc *webrtc.PeerConnection) {
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(w.selected)
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateFailed || s == webrtc.ICEConnectionStateClosed {
			w.setRoute(nil)
		}
	})
}

// selected takes the route from a newly selected pair: its remote
// address when its local side is on the UDP mux, else none.
func (w *directWriter) selected(pair *webrtc.ICECandidatePair) {
	if pair == nil || pair.Local == nil || pair.Remote == nil ||
		pair.Local.Protocol != webrtc.ICEProtocolUDP || pair.Remote.Protocol != webrtc.ICEProtocolUDP {
		w.setRoute(nil)
		return
	}
	ip, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil { // an unresolved mDNS name: leave it to Pion
		w.setRoute(nil)
		return
	}
	ap := netip.AddrPortFrom(ip.Unmap(), pair.Remote.Port)
	w.setRoute(&ap)
}

// setRoute sets the route, nil for none, and moves the RTCP tap to it.
func (w *directWriter) setRoute(ap *netip.AddrPort) {
	w.route.Store(ap)
	w.tapMu.Lock()
	defer w.tapMu.Unlock()
	if w.tapped.IsValid() {
		w.sock.taps.remove(w.tapped, w)
		w.tapped = netip.AddrPort{}
	}
	if ap != nil && !w.tapClose {
		w.tapped = *ap
		w.sock.taps.set(w.tapped, w)
	}
}

// closeTap removes the RTCP tap for good: the connection closed.
func (w *directWriter) closeTap() {
	w.tapMu.Lock()
	w.tapClose = true
	w.tapMu.Unlock()
	w.setRoute(nil)
}

// serverHello records our ServerHello, unchanged.
func (w *directWriter) serverHello(m handshake.MessageServerHello) handshake.Message {
	h := &serverHello{random: m.Random.MarshalFixed()}
	if m.CipherSuiteID != nil {
		h.suite = dtls.CipherSuiteID(*m.CipherSuiteID)
	}
	for _, ext := range m.Extensions {
		if u, ok := ext.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			h.profile = srtpProfile(u.ProtectionProfiles[0])
		}
	}
	w.helloMu.Lock()
	w.hello = h
	w.helloMu.Unlock()
	return &m
}

// srtpProfile is the SRTP profile of a DTLS-SRTP one we offer, 0 for
// any other.
func srtpProfile(p dtls.SRTPProtectionProfile) srtp.ProtectionProfile {
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm
	case dtls.SRTP_AEAD_AES_256_GCM:
		return srtp.ProtectionProfileAeadAes256Gcm
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80
	}
	return 0
}

// keyLog is the DTLS handshake's key log writer of a directWriter.
type keyLog struct{ w *directWriter }

// Write takes the handshake's key log line, "CLIENT_RANDOM <client
// random> <master secret>" in hex, and derives the SRTP keys from it when
// our ServerHello was seen (the server is the DTLS server). It never
// fails the handshake: without keys the connection uses Pion's path.
func (k keyLog) Write(line []byte) (int, error) {
	w := k.w
	w.helloMu.Lock()
	h := w.hello
	w.helloMu.Unlock()
	if h == nil || h.profile == 0 || w.ready.Load() {
		return len(line), nil
	}
	if err := w.derive(line, h); err != nil {
		w.log.Warn("direct_write_off", "error", err) // once per connection at most: one handshake
	}
	return len(line), nil
}

var errKeyLogLine = errors.New("sfu: direct write: unexpected key log line")

// derive makes the sending SRTP context from a key log line and h.
func (w *directWriter) derive(line []byte, h *serverHello) error {
	f := bytes.Fields(line)
	if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
		return errKeyLogLine
	}
	client, err1 := hex.DecodeString(string(f[1]))
	master, err2 := hex.DecodeString(string(f[2]))
	if err := errors.Join(err1, err2); err != nil || len(client) != handshake.RandomLength {
		return errKeyLogLine
	}
	x := exporter{master: master, client: client, server: h.random[:], hash: prfHash(h.suite)}
	cfg := srtp.Config{Profile: h.profile}
	if err := cfg.ExtractSessionKeysFromDTLS(x, false); err != nil {
		return fmt.Errorf("sfu: direct write: srtp keys: %w", err)
	}
	rctx, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, h.profile,
		srtp.SRTCPReplayProtection(srtcpReplayWindow))
	if err != nil {
		return fmt.Errorf("sfu: direct write: srtcp context: %w", err)
	}
	if err := w.setKeys(h.profile, cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt); err != nil {
		return err
	}
	w.tap.ctx.Store(rctx)
	w.ready.Store(true)
	w.log.Debug("direct_write_on", "srtp", h.profile.String(), "own_seal", w.seal.Load() != nil)
	return nil
}

// setKeys makes the sending context of profile from the master key and
// salt, and for an AEAD profile the writer's own sealing as well.
func (w *directWriter) setKeys(profile srtp.ProtectionProfile, key, salt []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx, err := srtp.CreateContext(key, salt, profile, srtp.Cryptex(w.cryptex))
	if err != nil {
		return fmt.Errorf("sfu: direct write: srtp context: %w", err)
	}
	w.ctx = ctx
	seal, _ := newRTPSealer(profile, key, salt) // nil for other profiles: ctx seals
	w.seal.Store(seal)
	return nil
}

// rolloverOf is the rollover count of ssrc, made on its first stream; a
// stream bound again under the same SSRC keeps counting where the last
// left off. w.mu is held.
func (w *directWriter) rolloverOf(ssrc uint32) *rolloverCount {
	r := w.rocs[ssrc]
	if r == nil {
		if w.rocs == nil {
			w.rocs = make(map[uint32]*rolloverCount)
		}
		r = &rolloverCount{}
		w.rocs[ssrc] = r
	}
	return r
}

// setCryptex makes the writer encrypt RTP header extensions (mode
// enabled) or not, as the subscriber's latest answer negotiated, before
// or after the keys are derived.
func (w *directWriter) setCryptex(mode srtp.CryptexMode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if mode == w.cryptex {
		return
	}
	w.cryptex = mode
	if w.ctx == nil {
		return
	}
	if err := w.ctx.UpdateOptions(srtp.Cryptex(mode)); err != nil {
		// Pion's path encrypts as negotiated: leave the packets to it.
		w.ready.Store(false)
		w.log.Warn("direct_write_off", "error", err)
	}
}

// sendsCryptex is the Cryptex mode Pion sends with after the subscriber's
// answer, which declares what the subscriber can receive: enabled when
// it carries a=cryptex for the session or for its RTP sections (Pion
// refuses an answer that has it for some of them only).
func sendsCryptex(answer webrtc.SessionDescription) srtp.CryptexMode {
	d, err := answer.Unmarshal()
	if err != nil {
		return srtp.CryptexModeDisabled
	}
	if _, ok := d.Attribute(sdp.AttrKeyCryptex); ok {
		return srtp.CryptexModeEnabled
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == "application" || m.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := m.Attribute(sdp.AttrKeyCryptex); ok {
			return srtp.CryptexModeEnabled
		}
	}
	return srtp.CryptexModeDisabled
}

// prfHash is the TLS 1.2 PRF hash of a cipher suite: SHA-384 for the
// _SHA384 suites, SHA-256 for every other DTLS 1.2 suite.
func prfHash(id dtls.CipherSuiteID) func() hash.Hash {
	switch id {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384
	}
	return sha256.New
}

// exporter is RFC 5705's keying material exporter of a DTLS 1.2
// session, as the DTLS connection computes it, from the secrets the
// handshake logged.
type exporter struct {
	master, client, server []byte
	hash                   func() hash.Hash
}

func (x exporter) ExportKeyingMaterial(label string, _ []byte, n int) ([]byte, error) {
	seed := make([]byte, 0, len(label)+len(x.client)+len(x.server))
	seed = append(append(append(seed, label...), x.client...), x.server...)
	return prf.PHash(x.master, seed, n, x.hash)
}

// write sends h and payload of st to the subscriber if w can (see
// directWriter), reporting whether it took the packet, and when it did
// not, whether it counted it as one both contexts must see (Pion's path
// is then to send it, and pionSent to be told when it did).
func (w *directWriter) write(st *sendStream, h *rtp.Header, payload []byte) (n int, taken, shared bool, err error) {
	if !w.ready.Load() {
		return 0, false, false, nil
	}
	route := w.route.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	shared = st.syncDue(h.SequenceNumber)
	if route == nil && !shared {
		return 0, false, false, nil
	}
	roc := st.roc.next(h.SequenceNumber)
	if shared {
		return 0, false, true, nil // counted here; Pion counts and sends it
	}
	buf := w.buf
	var slot []byte // the batch's own buffer, when the packet is held there
	hl := h.MarshalSize()
	if hl+len(payload)+int(h.PaddingSize)+srtpRoom <= maxRingPacket {
		slot = w.sock.reserve(*route)
		if slot != nil {
			buf = slot
		}
	}
	n, err = marshalRTP(buf, h, payload)
	if err != nil {
		w.cancel(slot)
		return 0, true, false, err
	}
	var out []byte
	if cryptex, seal := w.cryptex != srtp.CryptexModeDisabled, w.seal.Load(); seal != nil && n+gcmTagLen <= len(buf) && sealable(h, cryptex) {
		out = buf[:seal.sealPacket(buf, h, hl, n, roc, cryptex)]
	} else {
		// Pion's context, told the count: its own guess would need
		// every packet, as the writer's rolloverCount has.
		w.ctx.SetROC(h.SSRC, roc)
		if out, err = w.ctx.EncryptRTP(buf[:0], buf[:n], &w.hdr); err != nil {
			w.cancel(slot)
			return 0, true, false, fmt.Errorf("sfu: direct write: encrypt: %w", err)
		}
	}
	if slot != nil && cap(out) == cap(slot) && &out[:1][0] == &slot[0] {
		w.sock.commit(len(out), *route)
	} else {
		// Not held, or the tag did not fit the batch's buffer (EncryptRTP
		// then made a new one): sent as any datagram is.
		w.cancel(slot)
		if _, err := w.sock.WriteToAddrPort(out, *route); err != nil {
			return 0, true, false, fmt.Errorf("sfu: direct write: %w", err)
		}
	}
	st.sent(h, payload)
	return n, true, false, nil
}

// srtpRoom is the most SRTP adds to an RTP packet here: an AES-GCM tag
// (HMAC-SHA1-80's is 10 bytes), and 4 bytes of empty extension header
// that Cryptex adds to a packet with CSRCs and no extension.
const srtpRoom = gcmTagLen + 4

// cancel gives back the batch's buffer reserved for a packet, if one was.
func (w *directWriter) cancel(slot []byte) {
	if slot != nil {
		w.sock.cancel()
	}
}

// syncEvery is how far apart, in sequence numbers, the packets of a
// stream are that both contexts see: well inside the 32768 across which
// a context guesses the rollover count right.
const syncEvery = 8192

// syncDue reports whether the packet numbered seq is one both contexts
// must see: the stream's first, or syncEvery or more numbers from the
// last one they both saw (either way: a stream's numbers may step back,
// as a retransmission's do). The writer's mu is held.
func (st *sendStream) syncDue(seq uint16) bool {
	d := int16(seq - st.synced)
	return !st.syncedAny || d >= syncEvery || d <= -syncEvery
}

// pionSent records that Pion's path sent h and payload of st: counted
// for the sender reports, and, when shared (a packet both contexts are
// to see), as the stream's last synced one. The first shared packet of
// an SSRC on the connection is where Pion's count starts (and the
// subscriber's: Pion's SRTP session drops what it is given before it
// starts), so this writer's count of that SSRC starts again from the
// same packet; once per SSRC, not per stream bound: a stream bound
// again under an SSRC already counted keeps its rollovers.
func (w *directWriter) pionSent(st *sendStream, h *rtp.Header, payload []byte, shared bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st.sent(h, payload)
	if !shared {
		return
	}
	if !w.counted[h.SSRC] {
		*st.roc = rolloverCount{}
		st.roc.next(h.SequenceNumber)
		if w.counted == nil {
			w.counted = make(map[uint32]bool)
		}
		w.counted[h.SSRC] = true
	}
	st.synced, st.syncedAny = h.SequenceNumber, true
}

// marshalRTP writes h, payload and h.PaddingSize bytes of padding (the
// last one its count) into buf, as Pion's session does.
func marshalRTP(buf []byte, h *rtp.Header, payload []byte) (int, error) {
	n, err := h.MarshalTo(buf)
	if err != nil {
		return 0, fmt.Errorf("sfu: direct write: %w", err)
	}
	pad := int(h.PaddingSize)
	if n+len(payload)+pad > len(buf) {
		return 0, fmt.Errorf("sfu: direct write: packet of %d bytes: %w", n+len(payload)+pad, errPacketTooLarge)
	}
	n += copy(buf[n:], payload)
	clear(buf[n : n+pad])
	if h.Padding && pad > 0 {
		buf[n+pad-1] = byte(pad)
	}
	return n + pad, nil
}

var errPacketTooLarge = errors.New("larger than the write buffer")

// directInterceptor puts a directWriter at the bottom of a connection's
// interceptor chain, and sends the connection's sender reports
// (senderreport.go).
type directInterceptor struct {
	interceptor.NoOp
	w *directWriter
}

// NewInterceptor is the connection's, from its one factory (the
// interceptor.Factory of newSubscriberAPI).
func (w *directWriter) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &directInterceptor{w: w}, nil
}

// BindLocalStream sends the stream's packets through the directWriter,
// and those it does not take through next (Pion's SRTP session), and
// counts what either sent for the stream's sender reports.
func (d *directInterceptor) BindLocalStream(info *interceptor.StreamInfo, next interceptor.RTPWriter) interceptor.RTPWriter {
	ds := &directStream{w: d.w, st: d.w.bind(info), next: next}
	ds.bound.Store(true)
	d.w.mu.Lock()
	if d.w.bySSRC == nil {
		d.w.bySSRC = make(map[uint32]*directStream)
	}
	d.w.bySSRC[info.SSRC] = ds
	d.w.mu.Unlock()
	return ds
}

// UnbindLocalStream stops the stream's sender reports.
func (d *directInterceptor) UnbindLocalStream(info *interceptor.StreamInfo) { d.w.unbind(info) }

// directStream is one stream's writer at the bottom of its connection's
// interceptor chain: the directWriter, and next (Pion's SRTP session)
// for what the writer does not take. Pion's track writer reaches it
// through its wrapper; a Subscription's forwarded packets come to it
// straight (Subscription.write), without the wrapper, the chain's
// function value and the cold objects between them.
type directStream struct {
	w     *directWriter
	st    *sendStream
	next  interceptor.RTPWriter
	bound atomic.Bool // until UnbindLocalStream
}

// Write is interceptor.RTPWriter's.
func (ds *directStream) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	n, taken, shared, err := ds.w.write(ds.st, h, payload)
	if taken {
		return n, err
	}
	n, err = ds.next.Write(h, payload, a)
	if n > 0 { // 0: Pion's SRTP session has not started
		ds.w.pionSent(ds.st, h, payload, shared)
	}
	return n, err
}

// stream is the directStream bound for ssrc, nil if none is.
func (w *directWriter) stream(ssrc uint32) *directStream {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bySSRC[ssrc]
}

// warm reads the first of what writing to ds reads, ahead of the write
// (see Subscription.warm); the values read mean nothing.
func (ds *directStream) warm() uint64 {
	v := uint64(ds.st.ssrc)
	if ds.w.ready.Load() {
		if seal := ds.w.seal.Load(); seal != nil {
			v += uint64(seal.salt[0])
		}
	}
	return v
}

// BindRTCPWriter keeps the connection's RTCP writer for the sender
// reports.
func (d *directInterceptor) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	d.w.reports.setWriter(writer)
	return writer
}

// Close stops the sender reports.
func (d *directInterceptor) Close() error {
	d.w.reports.close()
	return nil
}
