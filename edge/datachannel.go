package edge

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"

	"github.com/media-service/media-service/edge/signal"
)

// Data channels (edge/PROTOCOL.md, "Data"). Each session has two on its
// publisher connection, pre-negotiated with fixed stream ids: _reliable
// (id 0, ordered) and _lossy (id 1, unordered, maxRetransmits 0). A client
// that wants data puts an application section in its publisher offer (a
// client that publishes no media offers just that). The same channels
// carry what the client sends and what the room sends it: one SCTP
// association per participant, no server offer needed for data, and a
// client that never uses data costs two idle channel structs.
//
// A message is relayed on the sender's channel goroutine (Pion reads each
// channel on its own goroutine, so a sender's reliable messages keep their
// order) to every recipient's channel of the same kind. Sends never block
// (Pion's SCTP queues them); a receiver's backlog is bounded instead, so a
// slow receiver loses its own messages and holds nobody up.

// lossyBufferedShare: lossy messages to a receiver are dropped once its
// backlog exceeds DataMaxBuffered divided by this, well before reliable
// ones are, so a congested receiver keeps its reliable messages longest.
const lossyBufferedShare = 8

// dataNoticeInterval spaces the data errors one session is sent, per
// code: a flood of bad messages must not become a flood of signaling.
const dataNoticeInterval = time.Second

// dataConfig is the part of Config the data channels read (see Config).
type dataConfig struct {
	MaxMessage  int
	Rate        float64
	Burst       int
	MaxBuffered int
}

func newDataConfig(c Config) dataConfig {
	return dataConfig{MaxMessage: c.DataMaxMessage, Rate: c.DataMessageRate,
		Burst: c.DataMessageBurst, MaxBuffered: c.DataMaxBuffered}
}

// sessionData is a session's two data channels and the bounds on what it
// sends. Its fields are set once in openData; the limiter and notices are
// safe for concurrent use.
type sessionData struct {
	reliable, lossy *webrtc.DataChannel
	limiter         *rate.Limiter               // the participant's messages, both channels
	notices         map[string]*rate.Sometimes  // by error code: at most one a second
	kinds           [2]metric.MeasurementOption // kind=reliable, kind=lossy

	// The channels open on each side of the association on its own: the
	// client's may open, and the client send and be sent to, before the
	// server's has. What the room sends a participant whose client offered
	// data is held in early until the server's channel opens (bounded like
	// a backlog), then sent in order; without it the first messages after
	// a join were lost whenever the server's side came up a little later.
	offered atomic.Bool    // a publisher offer carried an application section
	open    [2]atomic.Bool // the channel opened and early was sent; by kind
	mu      sync.Mutex     // early and the open flags' change
	early   [2]earlyFrames // by kind
}

// earlyFrames are frames for a channel that has not opened yet.
type earlyFrames struct {
	frames [][]byte
	bytes  int
}

// dataNoticeCodes are the data errors a session may be sent.
var dataNoticeCodes = []string{signal.CodeDataTooLarge, signal.CodeDataRateLimited,
	signal.CodeDataInvalid, signal.CodeDataDropped, signal.CodeNotPermitted}

// openData creates the session's data channels on its publisher
// connection; they open when the client's offer brings SCTP up. Any other
// channel the client opens is closed at once.
func (s *Session) openData() error {
	cfg := s.deps.cfg.Data
	d := &sessionData{limiter: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst),
		notices: make(map[string]*rate.Sometimes, len(dataNoticeCodes))}
	for _, code := range dataNoticeCodes {
		d.notices[code] = &rate.Sometimes{Interval: dataNoticeInterval}
	}
	for i, k := range []string{"reliable", "lossy"} {
		d.kinds[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", k)))
	}
	var err error
	if d.reliable, err = newDataChannel(s.pub, signal.DataReliableLabel, signal.DataReliableID, nil); err != nil {
		return err
	}
	zero := uint16(0)
	if d.lossy, err = newDataChannel(s.pub, signal.DataLossyLabel, signal.DataLossyID, &zero); err != nil {
		return err
	}
	d.reliable.OnMessage(func(m webrtc.DataChannelMessage) { s.relayData(false, m.Data) })
	d.lossy.OnMessage(func(m webrtc.DataChannelMessage) { s.relayData(true, m.Data) })
	d.reliable.OnOpen(func() { s.sendEarly(false) })
	d.lossy.OnOpen(func() { s.sendEarly(true) })
	s.pub.OnDataChannel(func(dc *webrtc.DataChannel) {
		s.log.Debug("data_channel_refused", "label", dc.Label())
		s.deps.metrics.data.refused("unknown_channel")
		_ = dc.Close()
	})
	s.data = d
	return nil
}

// noteDataOffer records that the client's publisher offer carries an
// application section: its data channels will open on this side too.
func (s *Session) noteDataOffer(offer *sdp.SessionDescription) {
	for _, m := range offer.MediaDescriptions {
		if m.MediaName.Media == "application" && m.MediaName.Port.Value != 0 {
			s.data.offered.Store(true)
			return
		}
	}
}

// newDataChannel creates one pre-negotiated channel; maxRetransmits nil
// means reliable and ordered, else unordered.
func newDataChannel(pc *webrtc.PeerConnection, label string, id uint16, maxRetransmits *uint16) (*webrtc.DataChannel, error) {
	yes, ordered := true, maxRetransmits == nil
	dc, err := pc.CreateDataChannel(label, &webrtc.DataChannelInit{
		Negotiated: &yes, ID: &id, Ordered: &ordered, MaxRetransmits: maxRetransmits})
	if err != nil {
		return nil, fmt.Errorf("edge: data channel %s: %w", label, err)
	}
	return dc, nil
}

// relayData checks one message from the client and delivers it, with the
// sender's identity, to its recipients. A refused message gets its sender
// an error (at most one a second per code); nothing else changes.
func (s *Session) relayData(lossy bool, b []byte) {
	d, cfg, m := s.data, s.deps.cfg.Data, s.deps.metrics.data
	m.received.Add(bg, 1, d.kind(lossy))
	if !d.limiter.Allow() {
		s.refuseData("rate_limited", signal.CodeDataRateLimited,
			fmt.Sprintf("data messages beyond %g per second are dropped", cfg.Rate))
		return
	}
	if !s.grants.CanPublishData() {
		s.refuseData("not_permitted", signal.CodeNotPermitted, "the token does not grant publish_data")
		return
	}
	if len(b) > cfg.MaxMessage {
		s.refuseData("too_large", signal.CodeDataTooLarge,
			fmt.Sprintf("a data message of %d bytes is above the limit of %d", len(b), cfg.MaxMessage))
		return
	}
	f, err := signal.ParseDataFrame(b)
	if err != nil {
		s.refuseData("invalid", signal.CodeDataInvalid, err.Error())
		return
	}
	out, err := signal.AppendDataFrame(make([]byte, 0, len(b)+len(s.identity)+1),
		signal.DataFrame{Topic: f.Topic, Identities: []string{s.identity}, Payload: f.Payload})
	if err != nil { // the identity is at most 128 bytes: cannot happen
		s.log.Error("data_frame_failed", "err", err)
		return
	}
	to := s.room.dataRecipients(s, f.Identities)
	for _, r := range to {
		r.deliverData(lossy, out)
	}
	m.fanout.Record(bg, int64(len(to)), d.kind(lossy))
}

// refuseData counts a refused message and tells its sender, at most once
// a second per code.
func (s *Session) refuseData(reason, code, msg string) {
	s.deps.metrics.data.refused(reason)
	s.notifyData(code, msg)
}

// notifyData sends a data error unless one with code went out in the
// last second.
func (s *Session) notifyData(code, msg string) {
	s.data.notices[code].Do(func() { s.sendError(code, msg) })
}

// deliverData sends one frame to this participant unless its backlog is
// full: lossy frames go only while the backlog is under an eighth of
// DataMaxBuffered, reliable ones while it stays within it. A frame not
// sent is counted, and the participant is told (at most once a second)
// that it lost messages. A frame for a channel the server has not opened
// yet waits in early when the client offered data, and is skipped when
// it did not.
func (s *Session) deliverData(lossy bool, frame []byte) {
	d := s.data
	k := d.index(lossy)
	if !d.open[k].Load() && s.holdEarly(lossy, frame) {
		return
	}
	if d.channel(lossy).ReadyState() != webrtc.DataChannelStateOpen {
		return // closing with the session
	}
	if d.reliable.BufferedAmount()+d.lossy.BufferedAmount()+uint64(len(frame)) > s.dataLimit(lossy) {
		s.dropData(lossy)
		return
	}
	s.sendFrame(lossy, frame)
}

// sendFrame sends one frame on the channel of its kind and counts it.
func (s *Session) sendFrame(lossy bool, frame []byte) {
	d, m := s.data, s.deps.metrics.data
	if err := d.channel(lossy).Send(frame); err != nil {
		s.log.Debug("data_send_failed", "err", err)
		m.dropped.Add(bg, 1, d.kind(lossy))
		return
	}
	m.delivered.Add(bg, 1, d.kind(lossy))
	m.deliveredBytes.Add(bg, int64(len(frame)), d.kind(lossy))
}

// holdEarly keeps frame for a channel the server has not opened yet, or
// drops it when it does not fit (or the client offered no data); it
// reports false, to send frame now, when the channel opened meanwhile.
func (s *Session) holdEarly(lossy bool, frame []byte) bool {
	d := s.data
	k := d.index(lossy)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.open[k].Load() {
		return false
	}
	if !d.offered.Load() {
		return true // no data channels will open: nothing to keep
	}
	if d.early[0].bytes+d.early[1].bytes+len(frame) > int(s.dataLimit(lossy)) {
		s.dropData(lossy)
		return true
	}
	e := &d.early[k]
	e.frames = append(e.frames, frame) // relayData never writes a frame again
	e.bytes += len(frame)
	return true
}

// sendEarly runs when a channel opens: it sends what waited for it, in
// order, and from then on deliverData sends directly. Holding mu while
// sending keeps a frame that arrives meanwhile behind the early ones.
func (s *Session) sendEarly(lossy bool) {
	d := s.data
	k := d.index(lossy)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.early[k].frames {
		s.sendFrame(lossy, f)
	}
	d.early[k] = earlyFrames{}
	d.open[k].Store(true)
}

// dataLimit is the backlog beyond which a frame of this kind is dropped.
func (s *Session) dataLimit(lossy bool) uint64 {
	limit := uint64(s.deps.cfg.Data.MaxBuffered)
	if lossy {
		limit /= lossyBufferedShare
	}
	return limit
}

// dropData counts a frame this participant did not get and tells it, at
// most once a second.
func (s *Session) dropData(lossy bool) {
	d := s.data
	s.deps.metrics.data.dropped.Add(bg, 1, d.kind(lossy))
	d.notices[signal.CodeDataDropped].Do(func() {
		// Detached: this runs on the sender's relay, which must not
		// wait for a slow receiver's signaling either.
		s.sendDetached(&signal.Message{Type: signal.TypeError, Code: signal.CodeDataDropped,
			Message: "data messages to you were dropped: you did not take them fast enough"}, nil)
		s.deps.metrics.signalError(signal.CodeDataDropped)
	})
}

// channel is the channel of a kind.
func (d *sessionData) channel(lossy bool) *webrtc.DataChannel {
	if lossy {
		return d.lossy
	}
	return d.reliable
}

func (d *sessionData) index(lossy bool) int {
	if lossy {
		return 1
	}
	return 0
}

func (d *sessionData) kind(lossy bool) metric.MeasurementOption {
	return d.kinds[d.index(lossy)]
}

// dataRecipients returns the members a message from s goes to: everyone
// else, or only the others whose identity is among to.
func (r *room) dataRecipients(s *Session, to []string) []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Session, 0, len(r.members))
	for _, m := range r.members {
		if m != s && (len(to) == 0 || contains(to, m.identity)) {
			out = append(out, m)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dataMetrics are the data channels' instruments. Attributes: kind
// (reliable, lossy) and the refusal reason; never a room or identity. The
// fan-out cost of a room shows as delivered messages per received one and
// in the fan-out histogram.
type dataMetrics struct {
	received       metric.Int64Counter   // media_data_messages_received_total{kind}
	refusals       metric.Int64Counter   // media_data_messages_refused_total{reason}
	delivered      metric.Int64Counter   // media_data_messages_delivered_total{kind}
	deliveredBytes metric.Int64Counter   // media_data_delivered_bytes_total{kind}
	dropped        metric.Int64Counter   // media_data_messages_dropped_total{kind}
	fanout         metric.Int64Histogram // media_data_fanout{kind}
}

// dataFanoutBuckets cover a message to one peer up to a full room.
var dataFanoutBuckets = []float64{0, 1, 2, 5, 10, 20, 50, 100}

func newDataMetrics(m metric.Meter) (*dataMetrics, error) {
	d := &dataMetrics{}
	var errs [6]error
	d.received, errs[0] = m.Int64Counter("media_data_messages_received",
		metric.WithDescription("Data channel messages received from participants, by kind (reliable, lossy)."))
	d.refusals, errs[1] = m.Int64Counter("media_data_messages_refused",
		metric.WithDescription("Data channel messages refused, by reason (rate_limited, too_large, invalid, not_permitted, unknown_channel)."))
	d.delivered, errs[2] = m.Int64Counter("media_data_messages_delivered",
		metric.WithDescription("Data channel messages sent to recipients, by kind: the fan-out cost."))
	d.deliveredBytes, errs[3] = m.Int64Counter("media_data_delivered_bytes",
		metric.WithUnit("By"), metric.WithDescription("Bytes of data channel messages sent to recipients, by kind."))
	d.dropped, errs[4] = m.Int64Counter("media_data_messages_dropped",
		metric.WithDescription("Data channel messages not sent to a recipient whose backlog was full, by kind."))
	d.fanout, errs[5] = m.Int64Histogram("media_data_fanout",
		metric.WithExplicitBucketBoundaries(dataFanoutBuckets...),
		metric.WithDescription("Recipients per relayed data channel message, by kind."))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("edge: data metrics: %w", err)
		}
	}
	return d, nil
}

func (d *dataMetrics) refused(reason string) {
	d.refusals.Add(bg, 1, metric.WithAttributes(attribute.String("reason", reason)))
}
