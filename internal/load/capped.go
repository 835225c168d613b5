package load

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/netlab"
)

// The capped scenario: the simulcast scenario's publisher (three layers,
// 150, 500 and 1700 kbit/s) with a microphone, -subscribers receivers of
// the top layer, and one more receiver inside a netlab network namespace
// whose downlink is capped with tc at -cap kbit/s for -cap-for, then
// lifted. It reports how the server's congestion control fits that
// receiver's stream to the cap: how long it takes to converge, the loss
// after that, the overshoot, how long it takes back to the top layer once
// the cap is lifted and how often the layer changes; and, as fanout
// does, the instance's CPU per forwarded packet against the floor in the
// same run (the floor relays the same layers' fan-out, the capped
// receiver counted on the low layer). It needs root (namespaces) and
// -spawn: the instance must listen on the namespace's side of the link.

// cappedReport is what the capped scenario adds to the report.
type cappedReport struct {
	CapKbps    int     `json:"cap_kbps"`
	CapSeconds float64 `json:"cap_seconds"`
	// ConvergenceSeconds is from the cap to the end of the first second
	// in which the receiver got a lower layer with under 2 % loss; -1:
	// never while capped.
	ConvergenceSeconds float64 `json:"convergence_seconds"`
	// LossPercent is the receiver's media loss from convergence to the
	// cap's end, counted on the publisher's own numbering.
	LossPercent float64 `json:"loss_after_convergence_percent"`
	// Overshoot is the highest receive rate of a 1 s window while capped,
	// as a multiple of the cap.
	Overshoot float64 `json:"overshoot"`
	// BackToTopSeconds is from lifting the cap to the first top-layer
	// packet; -1: not within cappedBackLimit.
	BackToTopSeconds float64 `json:"back_to_top_seconds"`
	// LayerChanges counts the receiver's layer changes from convergence
	// on, the climb back included; MostIn10s the most in any 10 s.
	LayerChanges int `json:"layer_changes"`
	MostIn10s    int `json:"most_layer_changes_in_10s"`
}

// cappedBackLimit bounds the wait for the top layer once the cap is lifted.
const cappedBackLimit = 60 * time.Second

// runCapped runs the capped scenario: the floor with the same layers'
// fan-out first, then the server with the capped receiver.
func runCapped(ctx context.Context, cfg Config, rep *Report, pr *progress) error {
	if err := netlab.Available(); err != nil {
		return fmt.Errorf("capped: %w", err)
	}
	h, err := netlab.New(ctx, "mediaload")
	if err != nil {
		return err
	}
	defer h.Close()
	wants := make([]int, cfg.Subscribers+1) // the capped receiver on the low layer
	for i := range cfg.Subscribers {
		wants[i] = len(simLayers) - 1
	}
	setSimulcastShape(rep, cfg, wants)
	rep.Shape.AudioPPS, rep.Shape.AudioPacket = cfg.Media.AudioPPS, cfg.Media.AudioPacket
	rep.Shape.ExpectedPerSec += float64(cfg.Subscribers * cfg.Media.AudioPPS)
	if err := measureLayeredFloor(ctx, cfg, wants, rep, pr); err != nil {
		return err
	}
	cfg.spawnEnv = h.ServiceEnv()
	t, err := openTarget(ctx, cfg, 2+cfg.Subscribers, pr)
	if err != nil {
		return err
	}
	defer t.close()
	return finishServer(t, rep, measureCapped(ctx, cfg, t, h, rep, pr))
}

// measureCapped joins everyone, caps the capped receiver for a while and
// lifts the cap again, then measures the server's window.
func measureCapped(ctx context.Context, cfg Config, t *serverTarget, h *netlab.Host, rep *Report, pr *progress) error {
	api, err := newLoadAPIWith(false, cfg.NACK, true, t.clientDiag)
	if err != nil {
		return err
	}
	m := newMediaRun(newClock(), cfg.Media)
	defer m.stopSenders()
	base, haveMetrics, err := t.baseline(ctx)
	if err != nil {
		return err
	}
	r, pub := simRoom("capped", m, cfg.Subscribers)
	defer leaveAll([]*room{r}, cfg.JoinConcurrency)
	jr := &joinResult{attempted: len(r.members) + 1}
	if err := pub.join(ctx, cfg, t, m, api); err != nil {
		return fmt.Errorf("capped: the publisher: %w", err)
	}
	mic, err := pub.publishAudio(ctx, m)
	if err != nil {
		return fmt.Errorf("capped: the publisher: %w", err)
	}
	jr.joined.Add(1)
	joinEach(ctx, cfg, r.members[1:], func(p *participant) {
		if joinSubscriber(ctx, cfg, t, m, p, signal.QualityHigh, jr) {
			p.sink.expect(pub.senders[len(simLayers)-1].src)
			p.sink.expect(mic.src)
		}
	})
	w := newCappedWatch(pub, mic)
	c, err := w.join(ctx, cfg, t, h, r.name)
	if err != nil {
		jr.fail(err)
		rep.Joins = jr.report()
		return err
	}
	defer c.Close()
	jr.joined.Add(1)
	rep.Joins = jr.report()
	if jr.failed.Load() > 0 {
		rep.fail("joins: %d of %d failed (first: %s)", jr.failed.Load(), jr.attempted, rep.Joins.FirstErrorText)
	}
	if !w.waitLayer(ctx, len(simLayers)-1, cfg.JoinTimeout) {
		return fmt.Errorf("capped: the capped receiver did not reach the top layer within %s", cfg.JoinTimeout)
	}
	pr.printf("server: %d participants joined; capping one at %d kbit/s for %s, then measuring %s", jr.joined.Load(), cfg.Cap, cfg.CapFor, cfg.Timing.Window)
	// The cap comes and goes before the window: the window's end stops
	// the senders.
	capRep, err := w.run(ctx, cfg, h, pr)
	if err != nil {
		return err
	}
	res, loaded, err := serverWindow(ctx, cfg.Timing, t, m, pr)
	if err != nil {
		return err
	}
	reportServer(rep, cfg.MaxLoss, res, base, loaded, haveMetrics, jr.joined.Load())
	rep.Capped = &capRep
	checkCapped(rep)
	return nil
}

// publishAudio publishes a microphone beside the simulcast track, sent
// by a sender of the run until it stops.
func (sp *simPublisher) publishAudio(ctx context.Context, m *mediaRun) (*sender, error) {
	track, err := client.NewAudioTrack(sp.p.identity + "-audio")
	if err != nil {
		return nil, err
	}
	if _, err := sp.p.current().Publish(ctx, track); err != nil {
		return nil, fmt.Errorf("publish audio: %w", err)
	}
	var pkt rtp.Packet
	s := m.newSender(kindAudio, func(p rtpPacket) error {
		pkt.Version = 2
		pkt.Marker, pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = p.marker, p.seq, p.ts, p.payload
		return track.WriteRTP(&pkt)
	})
	m.start(s)
	return s, nil
}

// checkCapped fails the run when the capped receiver never converged or
// never got back to the top layer; the figures themselves are reported.
func checkCapped(rep *Report) {
	c := rep.Capped
	if c.ConvergenceSeconds < 0 {
		rep.fail("capped: the receiver never converged under the %d kbit/s cap", c.CapKbps)
	}
	if c.BackToTopSeconds < 0 {
		rep.fail("capped: the receiver was not back on the top layer within %s of the cap's end", cappedBackLimit)
	}
}

// cappedWatch is the capped receiver: what it gets, by the stamps'
// sources (a layer of the publisher's, or its microphone). Its methods
// are safe for concurrent use.
type cappedWatch struct {
	layerOf map[uint32]int // source id → layer; the microphone's is -1

	mu      sync.Mutex // guards the fields below
	bytes   int64      // RTP bytes received, padding included
	media   int64      // stamped packets received
	lost    int64      // gaps in the sources' numbering, less late arrivals
	last    map[uint32]uint32
	layer   int // of the newest video packet; -1 before any
	newest  uint16
	haveSeq bool
	changes []time.Time
	videoAt time.Time // when the newest video packet arrived
}

// pauseGap is the silence after which a video packet is a paused
// track's resumption, whose numbering jumps, not a loss.
const pauseGap = 500 * time.Millisecond

func newCappedWatch(pub *simPublisher, mic *sender) *cappedWatch {
	w := &cappedWatch{layerOf: map[uint32]int{mic.src.id: -1}, last: map[uint32]uint32{}, layer: -1}
	for l, s := range pub.senders {
		w.layerOf[s.src.id] = l
	}
	return w
}

// join dials the capped receiver from inside h.
func (w *cappedWatch) join(ctx context.Context, cfg Config, t *serverTarget, h *netlab.Host, room string) (*client.Client, error) {
	api, err := newLoadAPIIn(false, cfg.NACK, false, t.clientDiag, h.ConfigureICE)
	if err != nil {
		return nil, err
	}
	tok, err := t.tokens.token(ctx, room, "capped", false)
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	c, err := client.Dial(jctx, t.place(), tok, client.Options{
		API: api, Dialer: &websocket.Dialer{NetDialContext: h.DialContext},
		// The namespace reaches only the instance's address on the link.
		ICEServers: []webrtc.ICEServer{},
		OnEvent:    t.events.observe, Log: t.clientLog.With("identity", "capped"),
		OnTrack: func(rt *client.RemoteTrack) { go w.read(rt.Track) },
	})
	if err != nil {
		return nil, fmt.Errorf("join the capped receiver: %w", err)
	}
	return c, nil
}

// read counts one track's packets until it ends.
func (w *cappedWatch) read(t *webrtc.TrackRemote) {
	video := t.Kind() == webrtc.RTPCodecTypeVideo
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) == nil {
			w.count(n, &pkt, video)
		}
	}
}

// count takes one packet of n bytes. A video packet older than the
// newest (a retransmission) counts for bytes and loss, not as a layer
// change.
func (w *cappedWatch) count(n int, pkt *rtp.Packet, video bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bytes += int64(n)
	old := false
	if video {
		old = w.haveSeq && int16(pkt.SequenceNumber-w.newest) < 0
		if !old {
			w.newest, w.haveSeq = pkt.SequenceNumber, true
		}
	}
	st, ok := readStamp(pkt.Payload)
	if !ok {
		return // a padding probe
	}
	l, known := w.layerOf[st.stream]
	if !known {
		return
	}
	w.media++
	prev, seen := w.last[st.stream]
	now := time.Now()
	resumed := l >= 0 && now.Sub(w.videoAt) > pauseGap
	if l >= 0 && !old {
		w.videoAt = now
	}
	switch {
	case l >= 0 && l != w.layer && !old:
		// A layer (re)starts: its numbering runs on from where the
		// publisher is now.
		w.layer, w.last[st.stream] = l, st.seq
		w.changes = append(w.changes, now)
	case resumed && !old:
		w.last[st.stream] = st.seq // the server resumes a paused track
	case !seen:
		w.last[st.stream] = st.seq
	case st.seq > prev:
		w.lost += int64(st.seq - prev - 1)
		w.last[st.stream] = st.seq
	case w.lost > 0:
		w.lost-- // a retransmission of a packet counted lost
	}
}

// cappedTally is the watch's cumulative counts.
type cappedTally struct{ bytes, media, lost int64 }

func (w *cappedWatch) tally() (cappedTally, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return cappedTally{w.bytes, w.media, w.lost}, w.layer
}

// waitLayer polls until the receiver gets layer, for at most limit.
func (w *cappedWatch) waitLayer(ctx context.Context, layer int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, l := w.tally(); l == layer {
			return true
		}
		if waitFor(ctx, 100*time.Millisecond) != nil {
			return false
		}
	}
	return false
}

// run caps h's downlink for cfg.CapFor, measuring each second (a
// progress line each), lifts it and waits for the top layer.
func (w *cappedWatch) run(ctx context.Context, cfg Config, h *netlab.Host, pr *progress) (cappedReport, error) {
	r := cappedReport{CapKbps: cfg.Cap, CapSeconds: cfg.CapFor.Seconds(), ConvergenceSeconds: -1, BackToTopSeconds: -1}
	if err := h.Cap(cfg.Cap, 0, 0); err != nil {
		return r, err
	}
	capped := time.Now()
	var convergedAt time.Time
	var after cappedTally
	prev, _ := w.tally()
	for time.Since(capped) < cfg.CapFor {
		if err := waitFor(ctx, time.Second); err != nil {
			h.Uncap()
			return r, err
		}
		now, layer := w.tally()
		d := cappedTally{now.bytes - prev.bytes, now.media - prev.media, now.lost - prev.lost}
		prev = now
		pr.printf("capped %4.1fs  %5.0f kbit/s  layer %d  lost %d of %d", time.Since(capped).Seconds(), float64(d.bytes)*8/1000, layer, d.lost, d.media+d.lost)
		r.Overshoot = max(r.Overshoot, float64(d.bytes)*8/1000/float64(cfg.Cap))
		switch {
		case !convergedAt.IsZero():
			after = cappedTally{after.bytes + d.bytes, after.media + d.media, after.lost + d.lost}
		case layer < len(simLayers)-1 && d.media > 0 && float64(d.lost) < 0.02*float64(d.media+d.lost):
			convergedAt = time.Now()
			r.ConvergenceSeconds = convergedAt.Sub(capped).Seconds()
		}
	}
	if err := h.Uncap(); err != nil {
		return r, err
	}
	lifted := time.Now()
	if after.media+after.lost > 0 {
		r.LossPercent = 100 * float64(after.lost) / float64(after.media+after.lost)
	}
	if w.waitLayer(ctx, len(simLayers)-1, cappedBackLimit) {
		r.BackToTopSeconds = time.Since(lifted).Seconds()
	}
	if !convergedAt.IsZero() {
		r.LayerChanges, r.MostIn10s = w.changesSince(convergedAt)
	}
	return r, nil
}

// changesSince counts the layer changes after at, and the most in any 10 s.
func (w *cappedWatch) changesSince(at time.Time) (n, most int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var c []time.Time
	for _, t := range w.changes {
		if t.After(at) {
			c = append(c, t)
		}
	}
	for i := range c {
		j := i
		for j < len(c) && c[j].Sub(c[i]) < 10*time.Second {
			j++
		}
		most = max(most, j-i)
	}
	return len(c), most
}

func (r *Report) cappedTable(w io.Writer) {
	c := r.Capped
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\ncapped receiver\t%d kbit/s for %.0f s\n", c.CapKbps, c.CapSeconds)
	fmt.Fprintf(w, "convergence\t%.1f s\n", c.ConvergenceSeconds)
	fmt.Fprintf(w, "loss after convergence\t%.2f%%\n", c.LossPercent)
	fmt.Fprintf(w, "overshoot (max 1 s rate / cap)\t%.2f\n", c.Overshoot)
	fmt.Fprintf(w, "back to the top layer\t%.1f s after the cap\n", c.BackToTopSeconds)
	fmt.Fprintf(w, "layer changes from convergence\t%d (at most %d in 10 s)\n", c.LayerChanges, c.MostIn10s)
}
