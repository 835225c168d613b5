package sfu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
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

// A Publication is one remote track (from a publisher PeerConnection)
// fanned out to subscribers. Its read loop goroutine is the only reader of
// the track and the only writer of forwarded packets; its RTCP goroutine
// drains the receiver's RTCP so sender reports reach the report
// interceptor. Keyframe requests (video) are sent by whoever asks, or by
// a timer when throttled.
//
// Subscribers are held in a copy-on-write slice: the read loop loads the
// current snapshot once per packet with no lock; Subscribe and
// unsubscribe replace it under mu.
type Publication struct {
	id       string
	streamID string
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecParameters
	ssrc     uint32 // the publisher's media SSRC, for PLIs

	engine *Engine
	remote *webrtc.TrackRemote
	recv   *webrtc.RTPReceiver
	pc     *webrtc.PeerConnection

	ring      *packetRing        // NACK buffer; nil for audio
	keyframes *keyframeRequester // nil for audio

	mu     sync.Mutex                      // guards closed and writes of subs
	closed bool                            // no new subscriptions once set
	subs   atomic.Pointer[[]*Subscription] // snapshot read per packet

	stopOnce sync.Once
	stop     chan struct{} // closed by Close: stops the goroutines
	done     chan struct{} // closed when the track ended or on Close
	wg       sync.WaitGroup
}

// Publish starts forwarding remote, a track received on the publisher's
// pc through recv. streamID is the publishing participant's id: every
// subscriber sees it as the track's msid stream id.
func (e *Engine) Publish(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver, pc *webrtc.PeerConnection, streamID string) (*Publication, error) {
	if remote == nil || recv == nil || pc == nil {
		return nil, errors.New("sfu: publish: track, receiver and peer connection are required")
	}
	p := &Publication{
		id: newID("TR_"), streamID: streamID, kind: remote.Kind(), codec: remote.Codec(),
		ssrc: uint32(remote.SSRC()), engine: e, remote: remote, recv: recv, pc: pc,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	p.subs.Store(&[]*Subscription{})
	if p.kind == webrtc.RTPCodecTypeVideo {
		p.ring = newPacketRing(e.cfg.RetransmitPackets, &e.metrics.nackBufferBytes)
		p.keyframes = newKeyframeRequester(e.cfg.PLIInterval, p.sendPLI, p.countThrottled)
	}
	e.metrics.activePubs[kindIndex(p.kind)].Add(1)
	p.start(p.readLoop)
	p.start(p.drainRTCP)
	return p, nil
}

func (p *Publication) start(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
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

// Close stops the read loop, detaches every subscription (RemoveTrack on
// each subscriber PeerConnection: their owners renegotiate) and waits for
// the publication's goroutines. It does not close the publisher's
// PeerConnection. It is idempotent.
func (p *Publication) Close() {
	p.stopOnce.Do(func() {
		close(p.stop)
		// Unblock the reads; Pion returns a timeout from both.
		_ = p.remote.SetReadDeadline(time.Now())
		_ = p.recv.SetReadDeadline(time.Now())
	})
	p.wg.Wait()
}

// readLoop reads the publisher's packets and forwards each until the track
// ends or Close; then it ends the publication.
func (p *Publication) readLoop() {
	defer p.end()
	buf := make([]byte, readBufSize)
	var h rtp.Header
	for errs := 0; errs < maxReadErrors; {
		n, _, err := p.remote.Read(buf)
		if err != nil {
			if p.stopping() || isEnd(err) {
				return
			}
			errs++
			continue
		}
		errs = 0
		p.forward(buf[:n], &h)
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

// end runs once when the read loop returns: no new subscriptions, every
// subscription detached, Done closed. Other goroutines are stopped too.
func (p *Publication) end() {
	p.mu.Lock()
	p.closed = true
	subs := *p.subs.Load()
	p.subs.Store(&[]*Subscription{})
	p.mu.Unlock()
	for _, s := range subs {
		s.detach()
	}
	if p.keyframes != nil {
		p.keyframes.stop()
	}
	if p.ring != nil {
		// After the subscriptions are detached: a NACK still being
		// answered finds the ring empty.
		p.ring.release()
	}
	p.stopOnce.Do(func() {
		close(p.stop)
		_ = p.recv.SetReadDeadline(time.Now())
	})
	p.engine.metrics.activePubs[kindIndex(p.kind)].Add(-1)
	close(p.done)
}

// forward parses one packet from the publisher, buffers it for NACKs and
// writes it to every subscriber. It allocates nothing: h and pkt are
// reused by the read loop.
func (p *Publication) forward(pkt []byte, h *rtp.Header) {
	k := kindIndex(p.kind)
	p.engine.metrics.receivedPackets[k].Add(1)
	p.engine.metrics.receivedBytes[k].Add(uint64(len(pkt)))
	payload, ok := parseRTP(pkt, h)
	if !ok {
		return
	}
	if p.ring != nil {
		p.ring.put(h.SequenceNumber, pkt)
	}
	sent := p.engine.fanOut(*p.subs.Load(), h, payload)
	p.engine.metrics.forwardedPackets[k].Add(uint64(sent))
	size := h.MarshalSize() + len(payload) + int(h.PaddingSize)
	p.engine.metrics.forwardedBytes[k].Add(uint64(sent * size))
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
func (e *Engine) fanOut(subs []*Subscription, h *rtp.Header, payload []byte) int {
	if len(subs) > 1 && e.udpConn != nil {
		e.udpConn.hold()
		defer e.udpConn.release()
	}
	sent := 0
	for _, s := range subs {
		if s.writeRTP(h, payload) {
			sent++
		}
	}
	return sent
}

// drainRTCP reads the publisher's RTCP (sender reports) so the report
// interceptor sees them; our own decisions need nothing from it.
func (p *Publication) drainRTCP() {
	buf := make([]byte, readBufSize)
	for errs := 0; errs < maxReadErrors; {
		if _, _, err := p.recv.Read(buf); err == nil {
			errs = 0
		} else if p.stopping() || isEnd(err) {
			return
		} else {
			errs++
		}
	}
}

// requestKeyframe asks the publisher for a keyframe, throttled. Audio has
// no keyframes.
func (p *Publication) requestKeyframe() {
	if p.keyframes != nil {
		p.keyframes.request()
	}
}

// sendPLI writes one PLI for the publisher's media SSRC.
func (p *Publication) sendPLI() {
	pli := []rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: p.ssrc}}
	if err := p.pc.WriteRTCP(pli); err != nil {
		p.engine.log.Debug("pli_write_failed", "publication", p.id, "error", err)
		return
	}
	p.engine.metrics.plis.Add(bgCtx, 1, kindOpt(p.kind))
}

func (p *Publication) countThrottled() {
	p.engine.metrics.plisThrottled.Add(bgCtx, 1, kindOpt(p.kind))
}

// add puts s into the fan-out, unless the publication has ended.
func (p *Publication) add(s *Subscription) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("sfu: subscribe to %s: %w", p.id, ErrClosed)
	}
	next := append(slices.Clone(*p.subs.Load()), s)
	p.subs.Store(&next)
	return nil
}

// remove takes s out of the fan-out; the read loop stops writing to it
// from its next packet.
func (p *Publication) remove(s *Subscription) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.subs.Load()
	i := slices.Index(cur, s)
	if i < 0 {
		return
	}
	next := slices.Delete(slices.Clone(cur), i, i+1)
	p.subs.Store(&next)
}
