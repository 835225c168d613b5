package load

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// The simulcast and dynacast scenarios: one publisher sends a video
// track in three RID layers, as a browser's 720p camera does, to
// -subscribers receivers in one room, each of which asks for one layer
// with track_settings. simulcast spreads the receivers over the layers (a
// third each); dynacast has them all ask for the low one, so the server
// tells the publisher to stop the other two, and with -dynacast=false the
// publisher sends them anyway: the two runs give what dynacast saves in
// the publisher's uplink and in the instance's CPU.

// simLayer is one synthetic layer: its share of a 720p camera's simulcast
// (Chrome's default bitrates for q, h, f), in packets of the size a VP8
// packetizer makes of such frames at 30 frames per second: one, two and
// six packets a frame.
type simLayer struct {
	quality       string
	kbps, packet  int
	width, height uint16
}

var simLayers = [3]simLayer{
	{signal.QualityLow, 150, 625, 320, 180},
	{signal.QualityMedium, 500, 1042, 640, 360},
	{signal.QualityHigh, 1700, 1180, 1280, 720},
}

// simKeyframeEvery is the layers' regular keyframe interval (5 s at 30
// fps); keyframes are also sent when the server asks for one.
const simKeyframeEvery = 150

// media is the layer's MediaConfig: video only, at the run's frame rate.
func (l simLayer) media(base MediaConfig) MediaConfig {
	mc := base
	mc.VideoKbps, mc.VideoPacket, mc.AudioPPS, mc.KeyframeEvery = l.kbps, l.packet, 0, simKeyframeEvery
	return mc
}

// wantedLayers is the layer each subscriber asks for: i mod 3 with
// simulcast, the lowest for all with dynacast.
func wantedLayers(cfg Config) []int {
	w := make([]int, cfg.Subscribers)
	if cfg.Scenario == "simulcast" {
		for i := range w {
			w[i] = i % len(simLayers)
		}
	}
	return w
}

// simulcastReport is what a simulcast or dynacast run adds: per layer,
// what the publisher sent in the window and what its subscribers got.
type simulcastReport struct {
	Dynacast bool                 `json:"dynacast"` // the publisher followed the server's layers messages
	Layers   []simulcastLayerStat `json:"layers"`
}

type simulcastLayerStat struct {
	Quality     string  `json:"quality"`
	Subscribers int     `json:"subscribers"`
	UplinkBytes uint64  `json:"publisher_uplink_bytes"` // RTP bytes the publisher sent on the layer in the window
	UplinkKbps  float64 `json:"publisher_uplink_kbps"`
	Forwarded   uint64  `json:"forwarded_packets"` // received by this layer's subscribers in the window
	Expected    uint64  `json:"expected_packets"`
	Lost        uint64  `json:"lost_packets"`
	LossPercent float64 `json:"loss_percent"`
	// WorstLoss is the highest loss of one subscriber of the layer;
	// OtherLayers counts packets its subscribers got from layers they did
	// not ask for.
	WorstLoss   float64 `json:"worst_subscriber_loss_percent"`
	OtherLayers uint64  `json:"packets_from_other_layers"`
}

// runSimulcast is the simulcast and dynacast scenarios: the floor with
// the same per-layer fan-out first, then the server.
func runSimulcast(ctx context.Context, cfg Config, rep *Report, pr *progress) error {
	wants := wantedLayers(cfg)
	setSimulcastShape(rep, cfg, wants)
	if err := measureLayeredFloor(ctx, cfg, wants, rep, pr); err != nil {
		return err
	}
	t, err := openTarget(ctx, cfg, 1+cfg.Subscribers, pr)
	if err != nil {
		return err
	}
	defer t.close()
	return finishServer(t, rep, measureSimulcast(ctx, cfg, t, wants, rep, pr))
}

// setSimulcastShape describes the run: one publisher of the three layers.
func setSimulcastShape(rep *Report, cfg Config, wants []int) {
	s := &rep.Shape
	s.Participants, s.Publishers, s.Rooms = 1+len(wants), 1, 1
	s.VideoPPS, s.VideoKbps, s.VideoPacket, s.AudioPPS, s.AudioPacket = 0, 0, 0, 0, 0
	s.ExpectedPerSec = 0
	for _, l := range simLayers {
		mc := l.media(cfg.Media)
		s.VideoPPS += mc.VideoPPS()
		s.VideoKbps += l.kbps
	}
	for _, w := range wants {
		s.ExpectedPerSec += simLayers[w].media(cfg.Media).VideoPPS()
	}
}

// measureLayeredFloor measures the floor of a simulcast run, when the
// run has one: the bare relay forwarding the layers each subscriber asks
// for (wants).
func measureLayeredFloor(ctx context.Context, cfg Config, wants []int, rep *Report, pr *progress) error {
	if !cfg.Floor {
		return nil
	}
	pr.printf("floor: bare UDP relay, the layers' fan-out")
	res, err := runFloorBuilt(ctx, cfg.floorOptions(), cfg.Media, cfg.Timing, pr, layeredFloor(cfg, wants))
	if err != nil {
		return err
	}
	reportFloor(rep, cfg, res)
	return nil
}

// layeredFloor builds the floor of a simulcast run: a group per layer
// that someone asks for, its publisher sending that layer's media to the
// subscribers that asked for it (what the server forwards with dynacast).
func layeredFloor(cfg Config, wants []int) floorBuilder {
	return func(ctx context.Context, m *mediaRun, proc *relayProc) ([]*floorMember, error) {
		var all []*floorMember
		for li, l := range simLayers {
			n := 0
			for _, w := range wants {
				if w == li {
					n++
				}
			}
			if n == 0 {
				continue
			}
			mc := l.media(cfg.Media)
			var src *source
			for i := range 1 + n {
				conn, err := joinFloor(ctx, proc.addr, uint32(li))
				if err != nil {
					return all, err
				}
				fm := &floorMember{conn: conn, sink: m.addSink(), relay: proc.addr}
				all = append(all, fm)
				if i == 0 {
					src = m.newLayerSender(mc, fm.writer(mc.VideoPacket)).src
				} else {
					fm.sink.expect(src)
				}
			}
		}
		return all, nil
	}
}

// newLayerSender is newSender of a video source with media mc (one
// simulcast layer's), not the run's.
func (m *mediaRun) newLayerSender(mc MediaConfig, w packetWriter) *sender {
	s := newSender(m.sources.add(kindVideo), mc, m.clk, w)
	m.mu.Lock()
	m.senders = append(m.senders, s)
	m.mu.Unlock()
	return s
}

// simRoom plans the room of a simulcast run (its name tagged with the
// scenario): the publisher first, then the subscribers; nothing joins yet.
func simRoom(scenario string, m *mediaRun, subscribers int) (*room, *simPublisher) {
	r := &room{name: fmt.Sprintf("load-%s-%s", runID(), scenario)}
	pub := &simPublisher{p: &participant{room: r.name, identity: "publisher", publish: true, sink: m.addSink()}}
	r.members = append(r.members, pub.p)
	for i := range subscribers {
		r.members = append(r.members, &participant{room: r.name, identity: fmt.Sprintf("s%d", i), sink: m.addSink()})
	}
	return r, pub
}

// simPublisher is the run's publisher: a participant whose video track
// is client.SimulcastTrack's three layers, one sender each.
type simPublisher struct {
	p       *participant
	track   *client.SimulcastTrack
	senders [3]*sender
	uplink  [3]atomic.Uint64 // RTP bytes sent per layer inside the window
}

// join dials, publishes the simulcast track and starts the layers'
// senders on m. api must be able to publish simulcast.
func (sp *simPublisher) join(ctx context.Context, cfg Config, t *serverTarget, m *mediaRun, api *webrtc.API) error {
	p := sp.p
	tok, err := t.tokens.token(ctx, p.room, p.identity, true)
	if err != nil {
		return err
	}
	p.token = tok
	opts := client.Options{API: api, OnEvent: t.events.observe, IgnoreLayers: !cfg.Dynacast, Log: t.clientLog.With("identity", p.identity)}
	c, err := client.Dial(ctx, t.place(), tok, opts)
	if err != nil {
		return fmt.Errorf("join %s: %w", p.identity, err)
	}
	p.mu.Lock()
	p.c = c
	p.mu.Unlock()
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if sp.track, err = c.PublishSimulcast(ctx, vp8, p.identity+"-video"); err != nil {
		return fmt.Errorf("publish %s: %w", p.identity, err)
	}
	leaving := make(chan struct{})
	p.stopSend = sync.OnceFunc(func() { close(leaving) })
	for i, l := range simLayers {
		s := m.newLayerSender(l.media(cfg.Media), sp.writer(i))
		s.keyNow = func() bool { return sp.track.KeyframeWanted(i) }
		s.width, s.height = l.width, l.height
		sp.senders[i] = s
		p.senders = append(p.senders, s)
	}
	for _, s := range sp.senders {
		m.startUntil(s, leaving)
	}
	return nil
}

// writer is layer i's packetWriter. A packet the track drops (the layer
// stopped by dynacast) costs no uplink; one sent inside the window is
// counted with its header and extensions.
func (sp *simPublisher) writer(i int) packetWriter {
	var pkt rtp.Packet
	return func(p rtpPacket) error {
		pkt.Version = 2
		pkt.Marker, pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = p.marker, p.seq, p.ts, p.payload
		sent, err := sp.track.WriteRTP(i, &pkt)
		if sent && sp.senders[i].src.lo.Load() != noWindow {
			sp.uplink[i].Add(uint64(pkt.MarshalSize()))
		}
		return err
	}
}

// measureSimulcast joins the publisher, then the subscribers (each asks
// for its layer as its track arrives and expects that layer's source
// only), measures the window, and leaves.
func measureSimulcast(ctx context.Context, cfg Config, t *serverTarget, wants []int, rep *Report, pr *progress) error {
	api, err := newLoadAPIWith(isLoopbackURL(t.urls[0]), cfg.NACK, true, t.clientDiag)
	if err != nil {
		return err
	}
	m := newMediaRun(newClock(), cfg.Media)
	defer m.stopSenders()
	base, haveMetrics, err := t.baseline(ctx)
	if err != nil {
		return err
	}
	r, pub := simRoom("simulcast", m, len(wants))
	defer leaveAll([]*room{r}, cfg.JoinConcurrency)
	jr := &joinResult{attempted: len(r.members)}
	if err := pub.join(ctx, cfg, t, m, api); err != nil {
		jr.fail(err)
		rep.Joins = jr.report()
		rep.fail("joins: the publisher failed: %v", err)
		return nil
	}
	jr.joined.Add(1)
	subs := r.members[1:]
	index := make(map[*participant]int, len(subs))
	for i, p := range subs {
		index[p] = i
	}
	joinEach(ctx, cfg, subs, func(p *participant) {
		layer := wants[index[p]]
		if joinSubscriber(ctx, cfg, t, m, p, simLayers[layer].quality, jr) {
			p.sink.expect(pub.senders[layer].src)
		}
	})
	recordFirstVideo(subs, jr)
	rep.Joins = jr.report()
	if jr.failed.Load() > 0 {
		rep.fail("joins: %d of %d failed (first: %s)", jr.failed.Load(), jr.attempted, rep.Joins.FirstErrorText)
	}
	pr.printf("server: %d participants joined; warming up %s, measuring %s", jr.joined.Load(), cfg.Timing.Warmup, cfg.Timing.Window)
	res, loaded, err := serverWindow(ctx, cfg.Timing, t, m, pr)
	if err != nil {
		return err
	}
	reportServer(rep, cfg.MaxLoss, res, base, loaded, haveMetrics, jr.joined.Load())
	rep.Simulcast = pub.report(cfg, subs, wants, res.window)
	checkLayers(rep, cfg.MaxLoss)
	return nil
}

// joinSubscriber joins p as a receiver that asks for quality once the
// publisher's track arrives, and waits for its first packet; it reports
// whether both happened within -join-timeout.
func joinSubscriber(ctx context.Context, cfg Config, t *serverTarget, m *mediaRun, p *participant, quality string, jr *joinResult) bool {
	jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	tok, err := t.tokens.token(jctx, p.room, p.identity, false)
	if err != nil {
		jr.fail(err)
		return false
	}
	p.token, p.dialAt = tok, m.clk.now()
	ids := make(chan string, 1)
	opts := client.Options{
		API: t.api, OnEvent: t.events.observe, Log: t.clientLog.With("identity", p.identity),
		OnTrack: func(rt *client.RemoteTrack) {
			p.wg.Go(func() { p.read(rt.Track, m.clk, 0) })
			select {
			case ids <- rt.Track.ID():
			default:
			}
		},
	}
	c, err := client.Dial(jctx, t.place(), tok, opts)
	if err != nil {
		jr.fail(fmt.Errorf("join %s: %w", p.identity, err))
		return false
	}
	p.mu.Lock()
	p.c = c
	p.mu.Unlock()
	select {
	case id := <-ids:
		if err := c.SetTrackSettings(id, quality, false); err != nil {
			jr.fail(fmt.Errorf("join %s: track_settings: %w", p.identity, err))
			return false
		}
	case <-jctx.Done():
		jr.fail(fmt.Errorf("join %s: no track within %s", p.identity, cfg.JoinTimeout))
		return false
	}
	select {
	case <-p.sink.arrived:
		jr.joined.Add(1)
		jr.firstMedia.add(time.Duration(p.sink.firstAt(kindCount) - p.dialAt))
		return true
	case <-jctx.Done():
		jr.fail(fmt.Errorf("join %s: no media within %s", p.identity, cfg.JoinTimeout))
		return false
	}
}

// report sums the window per layer: the publisher's uplink and what the
// layer's subscribers received, each subscriber's loss against the layer
// it asked for.
func (sp *simPublisher) report(cfg Config, subs []*participant, wants []int, window time.Duration) *simulcastReport {
	r := &simulcastReport{Dynacast: cfg.Dynacast}
	for li, l := range simLayers {
		st := simulcastLayerStat{Quality: l.quality, UplinkBytes: sp.uplink[li].Load()}
		if window > 0 {
			st.UplinkKbps = float64(st.UplinkBytes) * 8 / 1000 / window.Seconds()
		}
		var sum mediaTotals
		for i, p := range subs {
			if wants[i] != li {
				continue
			}
			st.Subscribers++
			var one mediaTotals
			one.add(p.sink)
			sum.add(p.sink)
			if one.expected > 0 {
				st.WorstLoss = max(st.WorstLoss, 100*float64(one.lost())/float64(one.expected))
			}
		}
		st.Forwarded, st.Expected, st.Lost, st.OtherLayers = sum.got, sum.expected, sum.lost(), sum.unexpected
		if sum.expected > 0 {
			st.LossPercent = 100 * float64(st.Lost) / float64(sum.expected)
		}
		r.Layers = append(r.Layers, st)
	}
	return r
}

// checkLayers fails the run when a subscriber lost more than maxLoss of
// the layer it asked for, or got another layer inside the window.
func checkLayers(rep *Report, maxLoss float64) {
	for _, l := range rep.Simulcast.Layers {
		switch {
		case l.Subscribers > 0 && l.Expected == 0:
			rep.fail("layer %s: nothing expected in the window", l.Quality)
		case l.WorstLoss > maxLoss:
			rep.fail("layer %s: a subscriber lost %.3f%% of it, above -max-loss %g%%", l.Quality, l.WorstLoss, maxLoss)
		case l.OtherLayers > 0:
			rep.fail("layer %s: its subscribers got %d packets of layers they did not ask for", l.Quality, l.OtherLayers)
		}
	}
}

func (r *Report) simulcastTable(w io.Writer) {
	s := r.Simulcast
	if s == nil {
		return
	}
	fmt.Fprintf(w, "\nsimulcast layer\tsubscribers\tpublisher uplink\tforwarded\tlost\tworst subscriber\tother layers\n")
	for _, l := range s.Layers {
		fmt.Fprintf(w, "%s\t%d\t%.0f kbit/s\t%d\t%d (%.3f%%)\t%.3f%%\t%d\n",
			l.Quality, l.Subscribers, l.UplinkKbps, l.Forwarded, l.Lost, l.LossPercent, l.WorstLoss, l.OtherLayers)
	}
	fmt.Fprintf(w, "publisher follows dynacast\t%v\n", s.Dynacast)
}
