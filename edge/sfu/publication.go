package sfu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// readBufSize is the read buffer for one RTP packet: above Pion's 1460
// byte receive MTU.
const readBufSize = 1500

// maxReadErrors ends a read loop after this many errors in a row that are
// neither the end of the track nor our own deadline: a stream that only
// fails is dead.
const maxReadErrors = 100

// ErrClosed is returned when subscribing to a publication that has ended.
var ErrClosed = errors.New("sfu: publication closed")

// A Publication is one track a participant publishes, fanned out to
// subscribers: a plain track, or a simulcast track of up to three layers
// (RIDs), each a remote track of its own with its SSRC, read loop, NACK
// history and keyframe requester (see layer). Each layer's read loop
// goroutine is the only reader of its track and writes its packets to
// the subscriptions, which keep the layer they forward (Subscription); a
// second goroutine per layer drains its RTCP so sender reports reach the
// report interceptor. Keyframe requests (video) are sent by whoever asks,
// or by a timer when throttled.
//
// Subscribers are held in a copy-on-write slice: the read loops load the
// current snapshot once per packet with no lock; Subscribe and
// unsubscribe replace it under mu.
type Publication struct {
	id        string
	streamID  string
	kind      webrtc.RTPCodecType
	codec     webrtc.RTPCodecParameters
	keyframe  func([]byte) bool // whether a payload starts a keyframe (codec's)
	vp8       bool              // VP8: picture IDs are rewritten across switches
	simulcast bool              // published with RIDs: dynacast applies
	levelID   uint8             // audio: the audio level extension's id, 0 without
	levels    levelWindow       // audio levels since the last TakeAudioLevel

	dyn dynacast

	source atomic.Pointer[Source] // nil: the kind's default (see Source)
	muted  atomic.Bool            // no forwarding, no keyframe requests (mute.go)

	engine *Engine
	recv   *webrtc.RTPReceiver
	pc     *webrtc.PeerConnection

	layers [maxLayers]atomic.Pointer[layer] // by index; nil until it arrives

	mu     sync.Mutex                      // guards closed, loops and writes of subs and layers
	closed bool                            // no new subscriptions or layers once set
	loops  int                             // layers' read loops still running
	subs   atomic.Pointer[[]*Subscription] // snapshot read per packet

	stopOnce sync.Once
	stop     chan struct{} // closed by Close: stops the goroutines
	done     chan struct{} // closed when every layer ended or on Close
	wg       sync.WaitGroup
}

// ErrLayerAttached is returned by Publish, with the publication it
// returns, when the track is a further simulcast layer (RID) of a track
// already published on the same receiver: the layer now feeds that
// publication, and there is no new one to announce.
var ErrLayerAttached = errors.New("sfu: publish: simulcast layer added to its publication")

// Publish starts forwarding remote, a track received on the publisher's
// pc through recv. streamID is the publishing participant's id: every
// subscriber sees it as the track's msid stream id.
//
// Pion delivers a simulcast track as one remote track per RID, each
// through OnTrack: the first makes the publication, and each later one is
// attached to it as a layer (ErrLayerAttached). Layers are ordered by
// layerIndex; a fourth is refused.
func (e *Engine) Publish(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver, pc *webrtc.PeerConnection, streamID string) (*Publication, error) {
	if remote == nil || recv == nil || pc == nil {
		return nil, errors.New("sfu: publish: track, receiver and peer connection are required")
	}
	rid := remote.RID()
	index := layerIndex(rid, recv)
	if index < 0 {
		return nil, fmt.Errorf("sfu: publish: simulcast layer %q is beyond the %d a publication takes", rid, maxLayers)
	}
	e.pubsMu.Lock()
	defer e.pubsMu.Unlock()
	if p := e.byRecv[recv]; p != nil && rid != "" {
		if err := p.attach(index, remote); err != nil {
			return nil, err
		}
		return p, ErrLayerAttached
	}
	p := &Publication{
		id: newID("TR_"), streamID: streamID, kind: remote.Kind(), codec: remote.Codec(),
		engine: e, recv: recv, pc: pc, stop: make(chan struct{}), done: make(chan struct{}),
	}
	p.keyframe = keyframeDetector(p.kind, p.codec.MimeType)
	p.vp8 = strings.EqualFold(p.codec.MimeType, webrtc.MimeTypeVP8)
	p.simulcast = rid != ""
	if p.kind == webrtc.RTPCodecTypeAudio {
		p.levelID = audioLevelID(recv)
	}
	p.subs.Store(&[]*Subscription{})
	e.metrics.activePubs[kindIndex(p.kind)].Add(1)
	if err := p.attach(index, remote); err != nil {
		return nil, err // not reached: a new publication takes any layer
	}
	if rid != "" {
		e.byRecv[recv] = p
	}
	return p, nil
}

// attach adds the layer remote at index and starts its goroutines.
func (p *Publication) attach(index int, remote *webrtc.TrackRemote) error {
	p.mu.Lock()
	if p.closed || p.stopping() {
		p.mu.Unlock()
		return fmt.Errorf("sfu: publish layer %q of %s: %w", remote.RID(), p.id, ErrClosed)
	}
	if p.layers[index].Load() != nil {
		p.mu.Unlock()
		return fmt.Errorf("sfu: publish layer %q of %s: layer %d is already published", remote.RID(), p.id, index)
	}
	l := newLayer(p, index, remote)
	l.declared.Store(p.declaredSize(l.rid))
	l.lastAt.Store(int64(time.Since(ringClock)))
	p.layers[index].Store(l)
	p.engine.metrics.activeLayers.Add(1)
	p.loops++
	p.start(func() { p.readLoop(l) })
	p.start(l.drainRTCP)
	subs := *p.subs.Load()
	p.mu.Unlock()
	// Subscriptions waiting for a better layer may now have it, and those
	// asking by size may now know its size. One added after subs was read
	// chooses for itself once in the fan-out (subscribe).
	resized := false
	for _, s := range subs {
		resized = s.resize() || resized
		s.retarget()
	}
	if resized {
		p.needChanged()
	}
	return nil
}

func (p *Publication) start(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// layer returns the layer at index, or nil when it has not arrived (or
// index is out of range).
func (p *Publication) layer(index int) *layer {
	if index < 0 || index >= maxLayers {
		return nil
	}
	return p.layers[index].Load()
}

// sending reports whether the layer at index has arrived and is not
// stopped.
func (p *Publication) sending(index int) bool {
	l := p.layer(index)
	return l != nil && !l.stopped.Load()
}

// Layers reports how many layers the publication has received so far: 1
// for a plain track, up to 3 for simulcast.
func (p *Publication) Layers() int {
	n := 0
	for i := range p.layers {
		if p.layers[i].Load() != nil {
			n++
		}
	}
	return n
}

// ID is the publication's id, unique on this instance: the track id every
// subscriber sees.
func (p *Publication) ID() string { return p.id }

// Kind is audio or video.
func (p *Publication) Kind() webrtc.RTPCodecType { return p.kind }

// StreamID is the publishing participant's id.
func (p *Publication) StreamID() string { return p.streamID }

// Codec is the codec the publisher sends; subscribers get the same.
func (p *Publication) Codec() webrtc.RTPCodecParameters { return p.codec }

// Done is closed when the publication has ended: the publisher's track
// ended (publisher gone or track removed) or Close was called.
func (p *Publication) Done() <-chan struct{} { return p.done }

// Close stops the read loops, detaches every subscription (RemoveTrack
// on each subscriber PeerConnection: their owners renegotiate) and waits
// for the publication's goroutines. It does not close the publisher's
// PeerConnection. It is idempotent.
func (p *Publication) Close() {
	p.halt()
	p.wg.Wait()
}

// halt closes stop and unblocks every layer's reads (Pion returns a
// timeout from them); it holds mu so no layer is attached meanwhile.
func (p *Publication) halt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopOnce.Do(func() {
		close(p.stop)
		now := time.Now()
		for i := range p.layers {
			if l := p.layers[i].Load(); l != nil {
				l.setReadDeadline(now)
			}
		}
	})
}

// readLoop reads one layer's packets and forwards each until the track
// ends or Close; the last layer's loop to return ends the publication.
func (p *Publication) readLoop(l *layer) {
	defer p.loopEnded()
	buf := make([]byte, readBufSize)
	var h rtp.Header
	for errs := 0; errs < maxReadErrors; {
		n, _, err := l.remote.Read(buf)
		if err != nil {
			if p.stopping() || isEnd(err) {
				return
			}
			errs++
			continue
		}
		errs = 0
		p.forward(l, buf[:n], &h)
	}
}

// loopEnded counts a layer's read loop out and ends the publication after
// the last.
func (p *Publication) loopEnded() {
	p.mu.Lock()
	p.loops--
	last := p.loops == 0
	if last {
		p.closed = true
	}
	p.mu.Unlock()
	if last {
		p.end()
	}
}

// stopping reports whether Close has been called.
func (p *Publication) stopping() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// isEnd reports whether a read error means the stream is over.
func isEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrDeadlineExceeded)
}

// end runs once, after the last read loop: no new subscriptions or
// layers (closed is set), every subscription detached, Done closed. Other
// goroutines are stopped too.
func (p *Publication) end() {
	p.closeDynacast()
	p.mu.Lock()
	subs := *p.subs.Load()
	p.subs.Store(&[]*Subscription{})
	p.mu.Unlock()
	for _, s := range subs {
		s.detach()
	}
	for i := range p.layers {
		if l := p.layers[i].Load(); l != nil {
			l.release() // after the subscriptions are detached
			p.engine.metrics.activeLayers.Add(-1)
		}
	}
	p.halt()
	p.engine.pubsMu.Lock()
	if p.engine.byRecv[p.recv] == p {
		delete(p.engine.byRecv, p.recv)
	}
	p.engine.pubsMu.Unlock()
	p.engine.metrics.activePubs[kindIndex(p.kind)].Add(-1)
	close(p.done)
}

// forward parses one packet from the publisher on layer l, buffers it
// for NACKs and writes it to every subscriber that takes that layer. It
// allocates nothing: h and pkt are reused by the read loop.
func (p *Publication) forward(l *layer, pkt []byte, h *rtp.Header) {
	k := kindIndex(p.kind)
	m := p.engine.metrics
	m.receivedPackets[k].Add(1)
	m.receivedBytes[k].Add(uint64(len(pkt)))
	if p.kind == webrtc.RTPCodecTypeVideo {
		m.layerReceived[l.index].Add(uint64(len(pkt)))
	}
	if p.levelID != 0 {
		if level, ok := audioLevel(pkt, p.levelID); ok {
			p.levels.add(level)
		}
	}
	payload, ok := parseRTP(pkt, h)
	if !ok {
		return
	}
	if l.ring != nil {
		l.ring.put(h.SequenceNumber, pkt)
	}
	in := inbound{layer: l, h: h, payload: payload, at: time.Since(ringClock), key: -1}
	p.track(l, in.at)
	if p.vp8 && in.keyframe() {
		p.noteSize(l, &in)
	}
	l.meter(in.at, len(pkt))
	if p.muted.Load() {
		return // SetMuted retargeted every subscription to none
	}
	sent := p.engine.fanOut(*p.subs.Load(), &in)
	m.forwardedPackets[k].Add(uint64(sent))
	if p.kind == webrtc.RTPCodecTypeVideo {
		m.layerPackets[l.index].Add(uint64(sent))
	}
	size := h.MarshalSize() + len(payload) + int(h.PaddingSize)
	m.forwardedBytes[k].Add(uint64(sent * size))
}

// inbound is one packet from a publisher on its way to the subscribers.
type inbound struct {
	layer   *layer
	h       *rtp.Header
	payload []byte
	at      time.Duration // arrival, since ringClock
	key     int8          // starts a keyframe: -1 not yet known, 0 no, 1 yes
	desc    vp8Descriptor // VP8's, once parsed
	parsed  bool
	warm    uint64 // the sum of what the fan-out's Subscription.warm read: used, so the reads stay
}

// vp8 is the packet's VP8 payload descriptor, parsed once for all the
// subscribers.
func (in *inbound) vp8() *vp8Descriptor {
	if !in.parsed {
		in.desc, in.parsed = parseVP8(in.payload), true
	}
	return &in.desc
}

// clockRate is the codec's RTP clock, for timestamps across a switch.
func (p *Publication) clockRate() uint32 {
	if p.codec.ClockRate == 0 {
		return 90000
	}
	return p.codec.ClockRate
}

// keyframe reports whether the packet starts a keyframe, parsing the
// payload once for all the subscribers that ask.
func (in *inbound) keyframe() bool {
	if in.key < 0 {
		in.key = 0
		if in.layer.pub.keyframe(in.payload) {
			in.key = 1
		}
	}
	return in.key == 1
}

// parseRTP parses pkt's header into h and returns the payload without
// padding (h.PaddingSize keeps its size so it is sent on). Header
// extensions are removed: their ids were negotiated with the publisher,
// not with the subscriber, and transport-cc numbers are per connection.
func parseRTP(pkt []byte, h *rtp.Header) ([]byte, bool) {
	n, err := h.Unmarshal(pkt)
	if err != nil {
		return nil, false
	}
	end := len(pkt)
	h.PaddingSize = 0
	if h.Padding {
		ps := int(pkt[end-1])
		if ps == 0 || n+ps > end {
			return nil, false
		}
		h.PaddingSize = byte(ps)
		end -= ps
	}
	h.Extension = false
	h.Extensions = h.Extensions[:0]
	h.ExtensionProfile = 0
	return pkt[n:end], true
}

// fanOut writes one packet to every subscriber and returns how many took
// it. It is the whole per-subscriber cost of forwarding on our side.
func (e *Engine) fanOut(subs []*Subscription, in *inbound) int {
	if len(subs) > 1 && e.udpConn != nil {
		e.udpConn.hold()
		defer e.udpConn.release()
	}
	if len(subs) > 1 {
		for _, s := range subs {
			in.warm += s.warm()
		}
	}
	sent := 0
	for _, s := range subs {
		if s.writeRTP(in) {
			sent++
		}
	}
	return sent
}

func (p *Publication) countThrottled() {
	p.engine.metrics.plisThrottled.Add(bgCtx, 1, kindOpt(p.kind))
}

// add puts s into the fan-out, unless the publication has ended.
func (p *Publication) add(s *Subscription) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("sfu: subscribe to %s: %w", p.id, ErrClosed)
	}
	next := append(slices.Clone(*p.subs.Load()), s)
	p.subs.Store(&next)
	p.mu.Unlock()
	p.needChanged()
	return nil
}

// remove takes s out of the fan-out; the read loop stops writing to it
// from its next packet.
func (p *Publication) remove(s *Subscription) {
	p.mu.Lock()
	cur := *p.subs.Load()
	i := slices.Index(cur, s)
	if i < 0 {
		p.mu.Unlock()
		return
	}
	next := slices.Delete(slices.Clone(cur), i, i+1)
	p.subs.Store(&next)
	p.mu.Unlock()
	p.needChanged()
}
