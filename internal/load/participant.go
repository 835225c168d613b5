package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/netlab"
)

// participant is one synthetic participant against the server: its
// signaling client, the senders of its tracks (when it publishes) and the
// sink of everything forwarded to it. When an instance drains and names
// where the room went, the participant moves there as the real clients do
// (client.Move, make before break) and keeps its sink and its senders'
// sequence: the moved session continues the same streams.
type participant struct {
	room     string
	identity string
	publish  bool
	sink     *sink
	senders  []*sender
	// light, for a light participant (-light), reads its media at its
	// sockets (light.go) through its own API, api; nil for a full one,
	// which uses the run's.
	light  *lightSub
	api    *webrtc.API
	dialAt int64 // clock time the join began (the WebSocket dial)
	token  string
	sig    netlab.Resettable // its signaling connections, which a flap resets
	flapAt atomic.Int64      // clock time of the last flap's reset

	wg       sync.WaitGroup // track readers
	follows  sync.WaitGroup // moves under way
	stopSend func()         // stops this participant's senders; idempotent
	// arrivals are the first and last packet of each kind received by
	// the first client (0) and by the one it moved to (1): the media gap
	// of a move is between them.
	arrivals [2][kindCount]span

	mu      sync.Mutex // guards the fields below
	c       *client.Client
	fans    []*trackFan // one per published kind, written by its sender
	leaving bool        // follow no more moves
	moves   int         // moves completed
	moveErr error       // the last move's failure
}

// span is when the first and the last packet of a stream arrived (clock
// times; 0: none yet). The participant's track readers write it.
type span struct{ first, last atomic.Int64 }

func (s *span) record(now int64) {
	s.first.CompareAndSwap(0, now)
	s.last.Store(now)
}

// current is the participant's client now (nil before it joined).
func (p *participant) current() *client.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.c
}

// join dials the instance, and for a publisher publishes a VP8 and an Opus
// track and starts its senders on m. Every forwarded track is read into
// the participant's sink.
func (p *participant) join(ctx context.Context, r *serverTarget, m *mediaRun) error {
	tok, err := r.tokens.token(ctx, p.room, p.identity, p.publish)
	if err != nil {
		return err
	}
	p.token = tok
	p.dialAt = m.clk.now()
	c, err := client.Dial(ctx, r.place(), tok, p.options(r, m, 0))
	if err != nil {
		return fmt.Errorf("join %s: %w", p.identity, err)
	}
	p.mu.Lock()
	p.c = c
	p.mu.Unlock()
	if p.light != nil {
		p.light.attach(c.Subscriber())
		p.wg.Go(func() { p.light.feedback(c.Done()) })
	}
	r.events.countRedirects(c)
	if !p.publish {
		return nil
	}
	return p.startPublishing(ctx, m)
}

// options are the options of the participant's client number gen (0:
// the first, 1: the one it moved to). A run drains one instance, so only
// the first client follows a `draining` message that names where the
// room went; the one it moved to ends with the run.
func (p *participant) options(r *serverTarget, m *mediaRun, gen int) client.Options {
	policy := webrtc.ICETransportPolicyAll
	if r.relay && !p.publish {
		policy = webrtc.ICETransportPolicyRelay
	}
	api := r.api
	if p.api != nil {
		api = p.api
	}
	return client.Options{
		API: api, OnTrack: p.onTrack(m.clk, gen), ICETransportPolicy: policy,
		RTPHeaderEncryption: r.headerEncryption,
		OnEvent: func(msg *signal.Message) {
			r.events.observe(msg)
			if msg.Type == signal.TypeDraining && msg.URL != "" && gen == 0 {
				p.follow(r, m, msg.URL)
			}
		},
		Log:    r.clientLog.With("identity", p.identity),
		Dialer: &websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: p.sig.DialContext},
	}
}

func (p *participant) startPublishing(ctx context.Context, m *mediaRun) error {
	tracks, kinds, err := p.publishOn(ctx, m, p.current())
	if err != nil {
		return err
	}
	leaving := make(chan struct{})
	p.stopSend = sync.OnceFunc(func() { close(leaving) })
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, t := range tracks {
		f := &trackFan{tracks: []*webrtc.TrackLocalStaticRTP{t}}
		p.fans = append(p.fans, f)
		s := m.newSender(kinds[i], f.write)
		p.senders = append(p.senders, s)
		m.startUntil(s, leaving)
	}
	return nil
}

// publishOn publishes a track of every kind the run sends on c.
func (p *participant) publishOn(ctx context.Context, m *mediaRun, c *client.Client) ([]*webrtc.TrackLocalStaticRTP, []mediaKind, error) {
	var tracks []*webrtc.TrackLocalStaticRTP
	var locals []webrtc.TrackLocal
	var kinds []mediaKind
	for _, k := range []mediaKind{kindAudio, kindVideo} {
		if m.cfg.pps(k) <= 0 {
			continue
		}
		t, err := newLocalTrack(k, p.identity)
		if err != nil {
			return nil, nil, err
		}
		tracks, locals, kinds = append(tracks, t.(*webrtc.TrackLocalStaticRTP)), append(locals, t), append(kinds, k)
	}
	if _, err := c.Publish(ctx, locals...); err != nil {
		return nil, nil, fmt.Errorf("publish %s: %w", p.identity, err)
	}
	return tracks, kinds, nil
}

func newLocalTrack(k mediaKind, identity string) (webrtc.TrackLocal, error) {
	if k == kindVideo {
		return client.NewVideoTrack(identity + "-video")
	}
	return client.NewAudioTrack(identity + "-audio")
}

// trackFan is one kind of a publisher's media, sent through Pion tracks:
// one, or while the participant moves, the old and the new session's, so
// the stream continues on the new session before the old one leaves. Each
// track sets SSRC and payload type for its binding.
type trackFan struct {
	mu     sync.Mutex // guards tracks and pkt
	tracks []*webrtc.TrackLocalStaticRTP
	pkt    rtp.Packet
}

// write is the fan's packetWriter: the error is the newest track's.
func (f *trackFan) write(p rtpPacket) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pkt.Version = 2
	f.pkt.Marker, f.pkt.SequenceNumber, f.pkt.Timestamp, f.pkt.Payload = p.marker, p.seq, p.ts, p.payload
	var err error
	for _, t := range f.tracks {
		err = t.WriteRTP(&f.pkt)
	}
	return err
}

// add sends through t too; keepLast drops every track but the newest.
func (f *trackFan) add(t *webrtc.TrackLocalStaticRTP) {
	f.mu.Lock()
	f.tracks = append(f.tracks, t)
	f.mu.Unlock()
}

func (f *trackFan) keepLast() {
	f.mu.Lock()
	f.tracks = f.tracks[len(f.tracks)-1:]
	f.mu.Unlock()
}

// onTrack starts a reader for each track forwarded to client gen.
func (p *participant) onTrack(clk clock, gen int) func(*client.RemoteTrack) {
	return func(rt *client.RemoteTrack) {
		p.wg.Go(func() { p.read(rt.Track, clk, gen) })
	}
}

// read accounts every packet of t until it ends. The receive time is taken
// right after the read returns, before any parsing.
func (p *participant) read(t *webrtc.TrackRemote, clk clock, gen int) {
	arrivals := &p.arrivals[min(gen, 1)][kindVideo]
	if t.Kind() == webrtc.RTPCodecTypeAudio {
		arrivals = &p.arrivals[min(gen, 1)][kindAudio]
	}
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		now := clk.now()
		arrivals.record(now)
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
			p.anchorLight(&h, buf[hl:end])
		}
	}
}

// anchorLight hands a light participant's receiver the stamp of a packet
// Pion read, so it reads the rest of the stream at the socket.
func (p *participant) anchorLight(h *rtp.Header, payload []byte) {
	if p.light == nil {
		return
	}
	st, ok := readStamp(payload)
	if !ok {
		return
	}
	if src := p.sink.sources.get(st.stream); src != nil {
		p.light.anchor(h.SSRC, h.SequenceNumber, src, st.seq)
	}
}

// leave sends `leave` and closes the client; its track readers end with
// the subscriber connection.
func (p *participant) leave(ctx context.Context) error {
	p.mu.Lock()
	p.leaving = true
	p.mu.Unlock()
	p.follows.Wait()
	if p.stopSend != nil {
		p.stopSend()
	}
	c := p.current()
	if c == nil {
		return nil
	}
	err := c.Leave(ctx)
	p.wg.Wait()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("leave %s: %w", p.identity, err)
	}
	return nil
}

// moveTimeout bounds one move: the new join, its publishing, and the
// handover (client.Move waits up to 5 s for the new session's tracks).
const moveTimeout = 30 * time.Second

// follow moves the participant to rtcURL, where a draining instance said
// its room went, on a goroutine of its own: the draining message arrives
// on the client's read goroutine, which the move must not block.
func (p *participant) follow(r *serverTarget, m *mediaRun, rtcURL string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leaving {
		return
	}
	p.follows.Go(func() { p.move(r, m, rtcURL) })
}

// move joins at rtcURL make before break: a publisher's new tracks carry
// its streams alongside the old ones until the old client leaves.
func (p *participant) move(r *serverTarget, m *mediaRun, rtcURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), moveTimeout)
	defer cancel()
	setup := func(ctx context.Context, next *client.Client) error {
		if !p.publish {
			return nil
		}
		tracks, _, err := p.publishOn(ctx, m, next)
		if err != nil {
			return err
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, t := range tracks {
			p.fans[i].add(t)
		}
		return nil
	}
	next, err := p.current().Move(ctx, rtcURL, p.token, p.options(r, m, 1), setup)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.moveErr = fmt.Errorf("move %s: %w", p.identity, err)
		return
	}
	p.c = next
	p.moves++
	for _, f := range p.fans {
		f.keepLast()
	}
}

// moved reports how many moves the participant completed, and the last
// failure.
func (p *participant) moved() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.moves, p.moveErr
}

// moveGap is the media gap of kind the participant saw while moving: from
// the last packet its old client received to the first its new one did,
// 0 when they overlapped. ok is false when either client received none.
func (p *participant) moveGap(kind mediaKind) (gap time.Duration, ok bool) {
	last, first := p.arrivals[0][kind].last.Load(), p.arrivals[1][kind].first.Load()
	if last == 0 || first == 0 {
		return 0, false
	}
	return max(0, time.Duration(first-last)), true
}
