package client

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// SimulcastRIDs are the RIDs PublishSimulcast sends, lowest layer first,
// as browsers name them: q (quarter), h (half), f (full).
var SimulcastRIDs = [3]string{"q", "h", "f"}

// NewSimulcastAPI is NewAPI with the mid and rid RTP header extensions
// registered, which a simulcast sender (PublishSimulcast) needs: the
// server tells the layers apart by them.
func NewSimulcastAPI(configure func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	return newAPI(configure, true)
}

// SimulcastTrack is one video track published in three RID layers. The
// caller writes each layer's packets with WriteRTP; the track follows the
// server's `layers` messages (dynacast) and drops the packets of a layer
// the server said nobody needs, as a browser stops that encoding. Its
// methods are safe for concurrent use.
type SimulcastTrack struct {
	sender       *webrtc.RTPSender
	tracks       [3]*webrtc.TrackLocalStaticRTP
	mid          string
	midID, ridID uint8

	active  [3]atomic.Bool // the layers to send; all until told otherwise
	keyWant [3]atomic.Bool // a keyframe was asked for on the layer
	changed chan struct{}  // signalled (without blocking) when active changes
}

// PublishSimulcast publishes one video track of codec c (VP8 or H.264)
// as three RID layers (SimulcastRIDs) and negotiates it. The client's API
// must come from NewSimulcastAPI. The returned track takes each layer's
// packets.
func (c *Client) PublishSimulcast(ctx context.Context, codec webrtc.RTPCodecCapability, id string) (*SimulcastTrack, error) {
	return c.PublishSimulcastSized(ctx, codec, id, [3]LayerSize{})
}

// LayerSize is the resolution a simulcast layer is sent at.
type LayerSize struct{ Width, Height int }

// PublishSimulcastSized is PublishSimulcast declaring each layer's
// resolution, lowest first, in the offer's a=rid lines (RFC 8851
// restrictions max-width and max-height): the server then knows them
// before any keyframe, and for codecs whose keyframes it does not read
// (H.264). A zero size declares nothing for its layer.
func (c *Client) PublishSimulcastSized(ctx context.Context, codec webrtc.RTPCodecCapability, id string, sizes [3]LayerSize) (*SimulcastTrack, error) {
	t := &SimulcastTrack{changed: make(chan struct{}, 1)}
	for i, rid := range SimulcastRIDs {
		tr, err := webrtc.NewTrackLocalStaticRTP(codec, id, "camera", webrtc.WithRTPStreamID(rid))
		if err != nil {
			return nil, fmt.Errorf("client: publish simulcast %s: %w", id, err)
		}
		t.tracks[i] = tr
		t.active[i].Store(true)
	}
	c.negotiateMu.Lock()
	defer c.negotiateMu.Unlock()
	tc, err := c.pub.AddTransceiverFromTrack(t.tracks[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("client: publish simulcast %s: %w", id, err)
	}
	t.sender = tc.Sender()
	for _, tr := range t.tracks[1:] {
		if err := t.sender.AddEncoding(tr); err != nil {
			return nil, fmt.Errorf("client: publish simulcast %s: layer %s: %w", id, tr.RID(), err)
		}
	}
	if sizes != ([3]LayerSize{}) {
		if c.sizes == nil {
			c.sizes = make(map[*webrtc.RTPSender][3]LayerSize)
		}
		c.sizes[t.sender] = sizes
	}
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	t.mid = tc.Mid()
	for _, x := range t.sender.GetParameters().HeaderExtensions {
		switch x.URI {
		case sdp.SDESMidURI:
			t.midID = uint8(x.ID)
		case sdp.SDESRTPStreamIDURI:
			t.ridID = uint8(x.ID)
		}
	}
	if t.midID == 0 || t.ridID == 0 {
		return nil, fmt.Errorf("client: publish simulcast %s: mid and rid header extensions not negotiated (use NewSimulcastAPI)", id)
	}
	for i := range t.tracks {
		c.wg.Add(1)
		go c.readLayerRTCP(t, i)
	}
	c.simMu.Lock()
	c.simulcast[t.mid] = t
	c.simMu.Unlock()
	return t, nil
}

// readLayerRTCP reads one layer's RTCP so the interceptors see it, and
// notes keyframe requests; it ends when the sender stops.
func (c *Client) readLayerRTCP(t *SimulcastTrack, i int) {
	defer c.wg.Done()
	for {
		pkts, _, err := t.sender.ReadSimulcastRTCP(SimulcastRIDs[i])
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				t.keyWant[i].Store(true)
			}
		}
	}
}

// MID is the track's mid on the publisher connection.
func (t *SimulcastTrack) MID() string { return t.mid }

// Active reports whether layer (0 q, 1 h, 2 f) is to be sent: some
// subscriber needs it, as far as the server last said.
func (t *SimulcastTrack) Active(layer int) bool {
	return layer >= 0 && layer < len(t.active) && t.active[layer].Load()
}

// Changed is signalled when the set of active layers changes.
func (t *SimulcastTrack) Changed() <-chan struct{} { return t.changed }

// KeyframeWanted reports, once, whether a keyframe was asked for on layer
// since the last call: the writer should send one.
func (t *SimulcastTrack) KeyframeWanted(layer int) bool {
	return layer >= 0 && layer < len(t.keyWant) && t.keyWant[layer].Swap(false)
}

// WriteRTP sends pkt on layer, with the mid and rid header extensions set
// (its SSRC and payload type are the layer's). A packet of a layer that
// is not active is dropped, as an encoder with that encoding off sends
// nothing: it reports whether the packet was sent.
func (t *SimulcastTrack) WriteRTP(layer int, pkt *rtp.Packet) (bool, error) {
	if !t.Active(layer) {
		return false, nil
	}
	if err := pkt.Header.SetExtension(t.midID, []byte(t.mid)); err != nil {
		return false, fmt.Errorf("client: simulcast mid extension: %w", err)
	}
	if err := pkt.Header.SetExtension(t.ridID, []byte(SimulcastRIDs[layer])); err != nil {
		return false, fmt.Errorf("client: simulcast rid extension: %w", err)
	}
	if err := t.tracks[layer].WriteRTP(pkt); err != nil {
		return false, fmt.Errorf("client: simulcast layer %s: %w", SimulcastRIDs[layer], err)
	}
	return true, nil
}

// applyLayers follows a `layers` message for one of the client's
// simulcast tracks: the RIDs listed are sent, the others not.
func (c *Client) applyLayers(m *signal.Message) {
	c.simMu.Lock()
	t := c.simulcast[m.MID]
	c.simMu.Unlock()
	if t == nil {
		c.log.Debug("layers_for_unknown_mid", "mid", m.MID)
		return
	}
	if c.opts.IgnoreLayers {
		return
	}
	changed := false
	for i, rid := range SimulcastRIDs {
		on := slices.Contains(m.Active, rid)
		if t.active[i].Swap(on) != on {
			changed = true
			if on {
				t.keyWant[i].Store(true) // a restarted encoding starts with a keyframe
			}
		}
	}
	if changed {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

// SetTrackSettings asks the server for a quality ("low", "medium",
// "high"; "" is high) of a track this participant receives, or to pause
// it. trackID is the received track's id (the publication id).
func (c *Client) SetTrackSettings(trackID, quality string, paused bool) error {
	return c.Send(&signal.Message{Type: signal.TypeTrackSettings, TrackID: trackID, Quality: quality, Paused: paused})
}

// SetTrackSize asks the server for the smallest layer of a track this
// participant receives that covers maxWidth by maxHeight pixels (0 bounds
// neither), as a player showing it at that size would, or to pause it.
func (c *Client) SetTrackSize(trackID string, maxWidth, maxHeight int, paused bool) error {
	return c.Send(&signal.Message{Type: signal.TypeTrackSettings, TrackID: trackID, MaxWidth: maxWidth, MaxHeight: maxHeight, Paused: paused})
}

// simulcastTracks is the Client's registry of its simulcast tracks by
// mid, for the server's `layers` messages, and of the layer sizes each
// declares in its offers (sizes, guarded by negotiateMu).
type simulcastTracks struct {
	simMu     sync.Mutex
	simulcast map[string]*SimulcastTrack
	sizes     map[*webrtc.RTPSender][3]LayerSize
}

// declareSizes writes the declared layer sizes into the a=rid lines of
// the offer sdp, whose mids are set (after SetLocalDescription). The
// caller holds negotiateMu.
func (c *Client) declareSizes(sdp string) string {
	if len(c.sizes) == 0 {
		return sdp
	}
	bySection := map[string][3]LayerSize{}
	for _, tc := range c.pub.GetTransceivers() {
		if s, ok := c.sizes[tc.Sender()]; ok && tc.Mid() != "" {
			bySection[tc.Mid()] = s
		}
	}
	sections := strings.Split(sdp, "\r\nm=")
	for i, sec := range sections {
		sizes, ok := bySection[sectionMID(sec)]
		if i == 0 || !ok {
			continue
		}
		for l, rid := range SimulcastRIDs {
			if sz := sizes[l]; sz.Width > 0 && sz.Height > 0 {
				line := "a=rid:" + rid + " send"
				sec = strings.Replace(sec, line+"\r\n", fmt.Sprintf("%s max-width=%d;max-height=%d\r\n", line, sz.Width, sz.Height), 1)
			}
		}
		sections[i] = sec
	}
	return strings.Join(sections, "\r\nm=")
}

// sectionMID is the a=mid of one media section's text.
func sectionMID(sec string) string {
	for _, line := range strings.Split(sec, "\r\n") {
		if mid, ok := strings.CutPrefix(line, "a=mid:"); ok {
			return mid
		}
	}
	return ""
}
