package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// newLoadAPI builds the Pion API every synthetic participant shares. It
// behaves as a browser does towards the server (NACK generation and
// response, RTCP reports, transport-cc sequence numbers on what it sends
// and feedback on what it receives) but leaves out Pion's stats and
// simulcast interceptors, which cost the load generator CPU per packet and
// change nothing the server sees. Against a loopback server ICE is kept on
// loopback UDP, so nothing leaves the machine. With nack false the
// participants never ask for retransmissions (-nack=false), which separates
// the server's forwarding cost from its NACK handling. Pion's own warnings
// and errors (RTP on an SSRC the description does not have, ...) go to
// pionLog.
func newLoadAPI(loopback, nack bool, pionLog io.Writer) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("load api: codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if nack {
		if err := webrtc.ConfigureNack(m, ir); err != nil {
			return nil, fmt.Errorf("load api: nack: %w", err)
		}
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("load api: reports: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return nil, fmt.Errorf("load api: twcc feedback: %w", err)
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		return nil, fmt.Errorf("load api: twcc header: %w", err)
	}
	var se webrtc.SettingEngine
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer, lf.DefaultLogLevel = pionLog, logging.LogLevelWarn
	se.LoggerFactory = lf
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	if loopback {
		client.LoopbackOnly(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// isLoopbackURL reports whether the instance at base is on this machine.
func isLoopbackURL(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// rtcURL is the signaling WebSocket URL of the instance at base.
func rtcURL(base string) string {
	u, _ := url.Parse(base)
	u.Scheme = map[string]string{"https": "wss"}[u.Scheme]
	if u.Scheme == "" {
		u.Scheme = "ws"
	}
	u.Path, u.RawQuery = "/v1/rtc", ""
	return u.String()
}

// participant is one synthetic participant against the server: its
// signaling client, the senders of its tracks (when it publishes) and the
// sink of everything forwarded to it.
type participant struct {
	room     string
	identity string
	publish  bool
	sink     *sink
	senders  []*sender
	dialAt   int64 // clock time the join began (the WebSocket dial)

	c        *client.Client
	wg       sync.WaitGroup     // track readers
	stopSend context.CancelFunc // stops this participant's senders
}

// join dials the instance, and for a publisher publishes a VP8 and an Opus
// track and starts its senders on m. Every forwarded track is read into
// the participant's sink.
func (p *participant) join(ctx context.Context, r *serverTarget, m *mediaRun) error {
	tok, err := r.tokens.token(ctx, p.room, p.identity, p.publish)
	if err != nil {
		return err
	}
	p.dialAt = m.clk.now()
	c, err := client.Dial(ctx, r.rtc, tok, client.Options{
		API: r.api, OnTrack: p.onTrack(m.clk), OnEvent: r.events.observe,
		Log: r.clientLog.With("identity", p.identity),
	})
	if err != nil {
		return fmt.Errorf("join %s: %w", p.identity, err)
	}
	p.c = c
	if !p.publish {
		return nil
	}
	return p.startPublishing(ctx, m)
}

func (p *participant) startPublishing(ctx context.Context, m *mediaRun) error {
	var tracks []webrtc.TrackLocal
	var kinds []mediaKind
	for _, k := range []mediaKind{kindAudio, kindVideo} {
		if m.cfg.pps(k) <= 0 {
			continue
		}
		t, err := newLocalTrack(k, p.identity)
		if err != nil {
			return err
		}
		tracks, kinds = append(tracks, t), append(kinds, k)
	}
	if _, err := p.c.Publish(ctx, tracks...); err != nil {
		return fmt.Errorf("publish %s: %w", p.identity, err)
	}
	var sendCtx context.Context
	sendCtx, p.stopSend = context.WithCancel(m.ctx)
	for i, t := range tracks {
		s := m.newSender(kinds[i], trackWriter(t.(*webrtc.TrackLocalStaticRTP)))
		p.senders = append(p.senders, s)
		m.startCtx(sendCtx, s)
	}
	return nil
}

func newLocalTrack(k mediaKind, identity string) (webrtc.TrackLocal, error) {
	if k == kindVideo {
		return client.NewVideoTrack(identity + "-video")
	}
	return client.NewAudioTrack(identity + "-audio")
}

// trackWriter sends through a Pion track; the track sets SSRC and payload
// type for its binding.
func trackWriter(t *webrtc.TrackLocalStaticRTP) packetWriter {
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
	return func(p rtpPacket) error {
		pkt.Marker, pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = p.marker, p.seq, p.ts, p.payload
		return t.WriteRTP(pkt)
	}
}

// serverEvents counts the server's `error` codes, with their messages, and
// `leave` reasons sent to the participants: a healthy run has none but the
// leaves it asked for.
type serverEvents struct {
	mu     sync.Mutex // guards counts
	counts map[string]int64
}

// observe is the clients' OnEvent; it runs on their read goroutines.
func (e *serverEvents) observe(m *signal.Message) {
	var key string
	switch m.Type {
	case signal.TypeError:
		// The message names the server's reason (an offer that cannot be
		// applied, an answer with no offer outstanding): what a failed run
		// needs to be diagnosed. The server's messages are a fixed set.
		key = "error " + m.Code + " (" + m.Message + ")"
	case signal.TypeLeave:
		key = "leave " + m.Reason
	default:
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = make(map[string]int64)
	}
	e.counts[key]++
}

func (e *serverEvents) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.counts)
}

// onTrack starts a reader for each forwarded track.
func (p *participant) onTrack(clk clock) func(*client.RemoteTrack) {
	return func(rt *client.RemoteTrack) {
		p.wg.Go(func() { p.read(rt.Track, clk) })
	}
}

// read accounts every packet of t until it ends. The receive time is taken
// right after the read returns, before any parsing.
func (p *participant) read(t *webrtc.TrackRemote, clk clock) {
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		now := clk.now()
		hl, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		end := n
		if h.Padding && n > hl {
			end -= int(buf[n-1])
		}
		if end > hl {
			p.sink.observe(buf[hl:end], now)
		}
	}
}

// leave sends `leave` and closes the client; its track readers end with
// the subscriber connection.
func (p *participant) leave(ctx context.Context) error {
	if p.stopSend != nil {
		p.stopSend()
	}
	if p.c == nil {
		return nil
	}
	err := p.c.Leave(ctx)
	p.wg.Wait()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("leave %s: %w", p.identity, err)
	}
	return nil
}
