package sfu

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// A layer's resolution is learnt from its VP8 keyframes, whose header
// carries it, or else from the publisher's offer, whose a=rid line may
// declare it (RFC 8851 restrictions max-width and max-height); a
// subscriber asking for a size (Request.MaxWidth and MaxHeight) is given
// the smallest layer that covers it. H.264 and VP9 keyframes are not
// parsed: without a declaration their sizes are estimated (see
// layerSize).

// assumedTop is the top layer's resolution while no layer's is known:
// a 720p camera, the browser client's default capture.
const (
	assumedTopWidth  = 1280
	assumedTopHeight = 720
)

// maxFrameSide bounds a size a subscriber may ask for: VP8 codes 14 bits
// per side, and no encoder we meet goes beyond.
const maxFrameSide = 16384

// vp8FrameSize reads the width and height of a VP8 keyframe from frame,
// the payload after its descriptor: a 3-byte frame tag whose lowest bit
// is clear on a keyframe, the start code 9d 01 2a, then width and height
// as 14-bit little-endian numbers (each with 2 bits of upscaling above),
// as RFC 6386 section 9.1 lays out. It allocates nothing.
func vp8FrameSize(frame []byte) (w, h int, ok bool) {
	if len(frame) < 10 || frame[0]&0x01 != 0 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0, false
	}
	w = int(binary.LittleEndian.Uint16(frame[6:]) & 0x3fff)
	h = int(binary.LittleEndian.Uint16(frame[8:]) & 0x3fff)
	return w, h, w > 0 && h > 0
}

// noteSize records the resolution of a VP8 keyframe that arrived on l.
// Only a change does any work: the subscriptions asking by size choose
// their layer again, and dynacast hears of any that changed.
func (p *Publication) noteSize(l *layer, in *inbound) {
	d := in.vp8()
	w, h, ok := vp8FrameSize(in.payload[d.size:])
	if !ok {
		return
	}
	if size := uint32(w)<<16 | uint32(h); l.size.Swap(size) == size {
		return
	}
	resized := false
	for _, s := range *p.subs.Load() {
		resized = s.resize() || resized
	}
	if resized {
		p.needChanged()
	}
}

// layerSize is the resolution of layer i: its latest keyframe's, or the
// offer's, when known, else estimated from the nearest layer that is known (the one
// below on a tie), assuming each layer is twice the size of the one below
// (the browsers' usual scaleResolutionDownBy of 4, 2 and 1), else from a
// 1280×720 top layer. Without any sizes, then, layers are ordered by rid:
// q, h, f are 320×180, 640×360 and 1280×720.
func (p *Publication) layerSize(i int) (w, h int) {
	w, h, at := assumedTopWidth, assumedTopHeight, maxLayers-1
	for d := range maxLayers {
		if kw, kh, ok := p.knownSize(i - d); ok {
			w, h, at = kw, kh, i-d
			break
		}
		if kw, kh, ok := p.knownSize(i + d); ok {
			w, h, at = kw, kh, i+d
			break
		}
	}
	for ; at < i; at++ {
		w, h = w*2, h*2
	}
	for ; at > i; at-- {
		w, h = w/2, h/2
	}
	return w, h
}

// knownSize is layer i's size from its keyframes, else from the offer,
// if it has one.
func (p *Publication) knownSize(i int) (w, h int, ok bool) {
	l := p.layer(i)
	if l == nil {
		return 0, 0, false
	}
	size := l.size.Load()
	if size == 0 {
		size = l.declared.Load()
	}
	return int(size >> 16), int(size & 0xffff), size != 0
}

// declaredSize is the resolution the publisher's offer declares for its
// layer rid, packed as layer.size is, or 0: the a=rid line of the
// publication's media section, with both max-width and max-height.
func (p *Publication) declaredSize(rid string) uint32 {
	desc := p.pc.RemoteDescription()
	if rid == "" || desc == nil {
		return 0
	}
	// Parsed apart: Unmarshal would write into Pion's own description.
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(desc.SDP); err != nil {
		return 0
	}
	mid := p.MID()
	for _, m := range parsed.MediaDescriptions {
		if v, _ := m.Attribute("mid"); v != mid {
			continue
		}
		for _, a := range m.Attributes {
			if id, rest, _ := strings.Cut(a.Value, " "); a.Key == "rid" && id == rid {
				return ridSize(rest)
			}
		}
	}
	return 0
}

// ridSize reads an a=rid line's max-width and max-height from what
// follows its id ("send max-width=320;max-height=180"); 0 unless both
// are there and from 1 to maxFrameSide.
func ridSize(line string) uint32 {
	_, params, _ := strings.Cut(line, " ")
	var w, h int
	for _, kv := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxFrameSide {
			continue
		}
		switch k {
		case "max-width":
			w = n
		case "max-height":
			h = n
		}
	}
	if w == 0 || h == 0 {
		return 0
	}
	return uint32(w)<<16 | uint32(h)
}

// layerCovering is the lowest layer at least w wide and h high (0 bounds
// neither), or the top layer when none is that large.
func (p *Publication) layerCovering(w, h int) int {
	for i := range maxLayers - 1 {
		lw, lh := p.layerSize(i)
		if lw >= w && lh >= h {
			return i
		}
	}
	return maxLayers - 1
}
