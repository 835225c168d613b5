// Package sfu is the media forwarding core: one Engine per instance owns
// the ICE muxes (one UDP port and one TCP port for every session) and the
// webrtc.API every PeerConnection is made from; a Publication takes one
// track a participant publishes, plain or in up to three simulcast
// layers, and fans its RTP out to the Subscriptions of everyone receiving
// it, each fed from one layer at a time and rewritten into one continuous
// stream, answering their NACKs from a shared buffer per layer and
// forwarding their keyframe requests to the publisher, throttled.
//
// Publishers' audio negotiates the RFC 6464 audio level extension: the
// read loop adds each packet's level to its publication's window
// (audiolevel.go), which package edge takes to rank active speakers.
//
// Signaling, rooms and who subscribes to what live in package edge; this
// package only moves media.
//
// Goroutines: a publication has two per layer (its RTP read loop, which
// writes that layer's forwarded packets, and a drain of its RTCP); a
// subscription has none: its SubscriberConn's RTCP router hands NACKs and
// keyframe requests over.
//
// Memory: each layer of a video publication has a NACK history, mapped
// outside the Go heap on Linux and unmapped when the publication ends
// (packethistory_linux.go).
//
// Metrics (Prometheus names; with kind=audio|video unless said):
// media_rtp_received_{packets,bytes}_total,
// media_rtp_forwarded_{packets,bytes}_total,
// media_rtcp_nacks_received_total, media_rtp_nacked_packets_total,
// media_rtp_retransmitted_packets_total, media_rtp_nack_misses_total,
// media_rtp_retransmits_limited_total, media_rtcp_plis_forwarded_total,
// media_rtcp_plis_throttled_total, media_publications_active and
// media_subscriptions_active; with layer=0|1|2 (the simulcast layer; 0
// for a plain track), media_rtp_forwarded_layer_packets_total (video) and
// media_layer_switches_total (by the layer switched to); without
// attributes, media_layer_switch_keyframe_requests_total,
// media_udp_send_errors_total and media_nack_buffer_bytes; for the
// subscribers' congestion control (bwemetrics.go),
// media_subscriber_bandwidth_estimate_bps (histogram),
// media_subscriptions_paused and media_layer_downgrades_total (by reason)
// and media_probe_bytes_total.
package sfu

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"go.opentelemetry.io/otel/metric"

	"github.com/media-service/media-service/internal/envconfig"
	"github.com/media-service/media-service/internal/handoff"
)

// tcpMuxReadPackets is how many packets an ICE-TCP connection queues
// before the reader drains them: enough for a keyframe burst.
const tcpMuxReadPackets = 128

// Engine is the instance's media core. It binds its muxes in New and keeps
// them until Close; every PeerConnection made by NewPublisherPeerConnection
// and NewSubscriberConn shares them, so an instance needs one UDP and one TCP port whatever its load.
// An Engine is safe for concurrent use.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// One API per role, all on the same muxes and codecs; they differ in
	// their interceptors (see receivingInterceptors). Subscriber connections get
	// an API each (newSubscriberAPI), for their own RTCP router.
	pubAPI      *webrtc.API // receive only
	subSettings webrtc.SettingEngine
	media       *webrtc.MediaEngine

	udpMux  ice.UDPMux
	udpConn *batchConn // the mux's socket: fan-outs batch their sends on it, the relay hands over on it
	udpAddr *net.UDPAddr
	tcpMux  ice.TCPMux   // nil when ICE-TCP is off
	tcpLn   *tcpListener // tcpMux's listener, closed by its Close; nil when ICE-TCP is off
	tcpAddr *net.TCPAddr // nil when ICE-TCP is off

	// byRecv finds the publication of a simulcast track by its receiver,
	// so its later layers attach to it (Publish).
	pubsMu sync.Mutex
	byRecv map[*webrtc.RTPReceiver]*Publication

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, binds the UDP mux (and the TCP mux unless
// cfg.TCPPort is -1) and builds the webrtc.API. A taken port fails here,
// before the instance serves anything.
func New(cfg Config, meter metric.Meter, log *slog.Logger) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(meter)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: log, metrics: m, byRecv: map[*webrtc.RTPReceiver]*Publication{}}
	if err := e.bind(pionLogs{log: log}); err != nil {
		_ = e.Close()
		return nil, err
	}
	if err := e.newAPIs(pionLogs{log: log}); err != nil {
		_ = e.Close()
		return nil, err
	}
	log.Info("media_engine_started", "udp", e.udpAddr.String(), "tcp", addrString(e.tcpAddr))
	return e, nil
}

// bind listens on the UDP port and, unless off, the TCP port.
func (e *Engine) bind(logs pionLogs) error {
	host := e.cfg.BindAddr
	udp, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(e.cfg.UDPPort)))
	if err != nil {
		return fmt.Errorf("sfu: listen udp %s:%d: %w", host, e.cfg.UDPPort, err)
	}
	e.udpAddr = udp.LocalAddr().(*net.UDPAddr)
	e.sizeBuffers(udp.(*net.UDPConn))
	e.udpConn = newBatchConn(udp.(*net.UDPConn), func(n int) { e.metrics.sendErrors.Add(bgCtx, int64(n)) })
	e.udpMux = webrtc.NewICEUDPMux(logs.NewLogger("udpmux"), e.udpConn)
	if e.cfg.TCPPort < 0 {
		return nil
	}
	if e.cfg.TCPBindAddr != "" {
		host = e.cfg.TCPBindAddr
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(e.cfg.TCPPort)))
	if err != nil {
		return fmt.Errorf("sfu: listen tcp %s:%d: %w", host, e.cfg.TCPPort, err)
	}
	e.tcpAddr = ln.Addr().(*net.TCPAddr)
	e.tcpLn = newTCPListener(ln)
	e.tcpMux = webrtc.NewICETCPMux(logs.NewLogger("tcpmux"), e.tcpLn, tcpMuxReadPackets)
	return nil
}

// udpBufferBytes is the socket buffer asked for in each direction. Every
// session shares the one socket: the kernel's default (about 200 KiB)
// holds under a second of one 2 Mbit/s stream, so a burst from many
// publishers, or one packet fanned out to 50 subscribers (55 KB), would
// drop or stall. The kernel caps it at net.core.rmem_max/wmem_max.
const udpBufferBytes = 8 << 20

// sizeBuffers enlarges the UDP socket's buffers, best effort.
func (e *Engine) sizeBuffers(c *net.UDPConn) {
	if err := c.SetReadBuffer(udpBufferBytes); err != nil {
		e.log.Warn("udp_read_buffer_not_set", "bytes", udpBufferBytes, "error", err)
	}
	if err := c.SetWriteBuffer(udpBufferBytes); err != nil {
		e.log.Warn("udp_write_buffer_not_set", "bytes", udpBufferBytes, "error", err)
	}
}

// newAPIs builds the webrtc.APIs from the muxes, codecs and interceptors.
func (e *Engine) newAPIs(logs pionLogs) error {
	se, err := e.settings(logs)
	if err != nil {
		return err
	}
	me, err := newMediaEngine(false)
	if err != nil {
		return err
	}
	pubMedia, err := newMediaEngine(true)
	if err != nil {
		return err
	}
	if err := registerAudioLevel(pubMedia); err != nil {
		return err
	}
	receive, err := receivingInterceptors(logs)
	if err != nil {
		return err
	}
	e.pubAPI = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(pubMedia),
		webrtc.WithInterceptorRegistry(registry(receive)))
	e.subSettings, e.media = se, me
	return nil
}

// newSubscriberAPI is the API of one subscriber connection: direct its
// one interceptor, which writes RTP to the socket itself when it can
// (directwrite.go) and sends the sender reports (senderreport.go), and
// RTCP delivered through router.
func (e *Engine) newSubscriberAPI(router *rtcpRouter, direct *directWriter) *webrtc.API {
	se := e.subSettings
	se.BufferFactory = router.queues
	direct.settings(&se)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(e.media),
		webrtc.WithInterceptorRegistry(registry([]interceptor.Factory{direct})))
}

// settings configures ICE: our muxes only, no mDNS (a server has a real
// address to show), the public address instead of the local one when
// configured, and timeouts that notice a dead peer within seconds.
func (e *Engine) settings(logs pionLogs) (webrtc.SettingEngine, error) {
	var se webrtc.SettingEngine
	se.LoggerFactory = logs
	se.SetICEUDPMux(e.udpMux)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if e.tcpMux != nil {
		se.SetICETCPMux(e.tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(networks)
	// The server only accepts ICE-TCP; it never dials out to a peer's
	// candidates, which a peer could point anywhere.
	se.DisableActiveTCP(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(e.cfg.ICEDisconnectedTimeout, e.cfg.ICEFailedTimeout, e.cfg.ICEKeepalive)
	se.SetICEMaxBindingRequests(maxBindingRequests(e.cfg.ICEDisconnectedTimeout + e.cfg.ICEFailedTimeout))
	setAcceptanceWaits(&se)
	// A lost handshake flight is resent after 100 ms, not Pion's 1 s (the
	// interval doubles on each retry), so loss on a join costs little.
	se.SetDTLSRetransmissionInterval(dtlsRetransmitInterval)
	// Pion's SRTP replay window of 64 packets is 160 ms of 400 packets/s
	// video: a publisher's retransmission after a longer round trip would
	// be dropped as a replay. 1024, as browsers use, covers the NACK
	// buffer's span.
	se.SetSRTPReplayProtectionWindow(srtpReplayWindow)
	se.SetSRTPProtectionProfiles(srtpProfiles...)
	// Pion's default SCTP max-message-size is 1 GiB, and its data channel
	// reader grows its buffer to whatever arrives: a client could make
	// the server hold a gigabyte. Advertised in our answers, this bound
	// makes clients refuse larger messages themselves.
	se.SetSCTPMaxMessageSize(MaxDataMessage)
	se.SetIncludeLoopbackCandidate(e.cfg.IncludeLoopback || e.udpAddr.IP.IsLoopback())
	if len(e.cfg.PublicIPs) > 0 {
		rule := webrtc.ICEAddressRewriteRule{
			External:        e.cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}
		if err := se.SetICEAddressRewriteRules(rule); err != nil {
			return se, fmt.Errorf("sfu: %s: %w", envconfig.Name(&e.cfg, &e.cfg.PublicIPs), err)
		}
	}
	return se, nil
}

// MaxDataMessage is the largest data channel message a connection takes
// (its SCTP max-message-size): 64 KiB, what browsers send unfragmented
// across implementations. Package edge bounds messages lower by
// configuration.
const MaxDataMessage = 65536

// dtlsRetransmitInterval is the first DTLS handshake retransmission
// timeout: above any usual round trip, far below Pion's 1 s default.
const dtlsRetransmitInterval = 100 * time.Millisecond

// iceCheckInterval is how often Pion's ICE agent checks its candidate
// pairs while it connects (its default; not configurable through webrtc).
const iceCheckInterval = 200 * time.Millisecond

// maxBindingRequests is how many unanswered checks a candidate pair
// gets before Pion counts it failed: as many as fit in checking, the
// time the agent checks before it gives the connection up (the
// disconnected and failed timeouts). Pion's default, 7, gives a pair
// 1.4 s; and a controlling agent (ours, on subscriber connections,
// which we offer) never checks a failed pair again, even once the
// peer's own checks arrive on it. So a subscriber whose first answers
// come late (a slow device, a busy host, a lossy first second) stayed
// in checking until the connection failed, seconds after its path
// worked (TestICEConnectsAfterALateStart).
func maxBindingRequests(checking time.Duration) uint16 {
	return uint16(min(max(checking/iceCheckInterval, 7), math.MaxUint16))
}

// srtpReplayWindow is how far behind the newest packet a packet may
// arrive and still be accepted.
const srtpReplayWindow = 1024

// srtcpReplayWindow is the replay window of the subscribers' RTCP that
// the taps decrypt (rtcptap.go): it comes in order, a few packets a
// hundred milliseconds, so 64 is seconds of it.
const srtcpReplayWindow = 64

// srtpProfiles are the SRTP protection profiles offered, in the order
// the server picks them when it is the DTLS server (a subscriber
// connection: the peer answers our offer as the DTLS client). Pion puts
// AES-256-GCM first; AES-128-GCM is as standard for SRTP (RFC 7714),
// every browser offers it, and it does 10 AES rounds per block instead
// of 14, on every copy a fan-out encrypts. AES-CM with HMAC-SHA1 stays
// last, for peers without GCM.
var srtpProfiles = []dtls.SRTPProtectionProfile{
	dtls.SRTP_AEAD_AES_128_GCM,
	dtls.SRTP_AEAD_AES_256_GCM,
	dtls.SRTP_AES128_CM_HMAC_SHA1_80,
}

// relayAcceptanceWait is how long a controlling server waits before it
// nominates a pair through a TURN relay, so a direct pair found a moment
// later is preferred.
const relayAcceptanceWait = 500 * time.Millisecond

// setAcceptanceWaits lets the server nominate a direct pair as soon as it
// works. Pion waits 1 s before nominating a peer-reflexive pair (and
// 500 ms for server-reflexive) in case a better pair turns up; but the
// server has only its own host candidates, and a client's connectivity
// checks usually arrive before its trickled candidates, so nearly every
// client first shows as peer-reflexive. On the subscriber connection,
// where the server offers and so controls ICE, Pion's default would add a
// second to every join.
func setAcceptanceWaits(se *webrtc.SettingEngine) {
	se.SetHostAcceptanceMinWait(0)
	se.SetSrflxAcceptanceMinWait(0)
	se.SetPrflxAcceptanceMinWait(0)
	se.SetRelayAcceptanceMinWait(relayAcceptanceWait)
}

// NewPublisherPeerConnection makes the connection a participant publishes
// on (the client offers, the server only receives): it has only the
// receiving interceptors (NACK generator, receiver reports, TWCC), and
// it accepts RID simulcast (the mid, rid and repaired-rid header
// extensions, which Pion reads to tell the layers apart).
func (e *Engine) NewPublisherPeerConnection(c webrtc.Configuration) (*webrtc.PeerConnection, error) {
	return newPeerConnection(e.pubAPI, c, "publisher")
}

func newPeerConnection(api *webrtc.API, c webrtc.Configuration, role string) (*webrtc.PeerConnection, error) {
	pc, err := api.NewPeerConnection(c)
	if err != nil {
		return nil, fmt.Errorf("sfu: new %s peer connection: %w", role, err)
	}
	return pc, nil
}

// UDPAddr is the address the UDP mux is bound to (with the real port when
// the configured one was 0).
func (e *Engine) UDPAddr() *net.UDPAddr { return e.udpAddr }

// Handoff connects this instance's TURN relay to the UDP mux's socket, so
// that relayed media skips the kernel (internal/handoff).
func (e *Engine) Handoff() *handoff.Switch { return e.udpConn.routes }

// TCPAddr is the address the ICE-TCP mux is bound to, or nil when ICE-TCP
// is off.
func (e *Engine) TCPAddr() *net.TCPAddr { return e.tcpAddr }

// Tracks returns the tracks being forwarded now: publications' layers
// (one for a plain track, up to three for simulcast) plus subscriptions.
// The goroutine-leak detector budgets goroutines by it, since each layer
// and each subscription runs a few of its own.
func (e *Engine) Tracks() int {
	m := e.metrics
	return int(m.activeLayers.Load() + m.activeSubs.Load())
}

// Close closes both muxes (and with them every ICE connection still using
// them). Close the PeerConnections first: it is the last step of a drain.
// It is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		var errs []error
		if e.udpMux != nil {
			errs = append(errs, e.udpMux.Close())
		}
		if e.tcpMux != nil {
			errs = append(errs, e.tcpMux.Close())
		}
		// The metrics callbacks stay registered: the meter provider's
		// final flush, after the drain, must still read the last values.
		if err := errors.Join(errs...); err != nil {
			e.closeErr = fmt.Errorf("sfu: close engine: %w", err)
			return
		}
		e.log.Info("media_engine_stopped")
	})
	return e.closeErr
}

// newID returns prefix followed by 12 random base-62 characters: ids a
// client sees must not be guessable or collide across publishers.
func newID(prefix string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [12]byte
	_, _ = rand.Read(b[:])
	out := make([]byte, 0, len(prefix)+len(b))
	out = append(out, prefix...)
	for _, c := range b {
		out = append(out, alphabet[int(c)%len(alphabet)])
	}
	return string(out)
}

func addrString(a *net.TCPAddr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}
