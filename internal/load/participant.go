package load

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
)

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
	wg       sync.WaitGroup // track readers
	stopSend func()         // stops this participant's senders; idempotent
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
	c, err := client.Dial(ctx, r.place(), tok, client.Options{
		API: r.api, OnTrack: p.onTrack(m.clk), OnEvent: r.events.observe,
		Log: r.clientLog.With("identity", p.identity),
	})
	if err != nil {
		return fmt.Errorf("join %s: %w", p.identity, err)
	}
	p.c = c
	r.events.countRedirects(c)
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
	leaving := make(chan struct{})
	p.stopSend = sync.OnceFunc(func() { close(leaving) })
	for i, t := range tracks {
		s := m.newSender(kinds[i], trackWriter(t.(*webrtc.TrackLocalStaticRTP)))
		p.senders = append(p.senders, s)
		m.startUntil(s, leaving)
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
