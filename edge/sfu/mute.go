package sfu

import (
	"github.com/pion/webrtc/v4"
)

// Source is what a published track carries: a camera, a microphone, or
// a screen share's video or audio. Applications show each differently,
// and the congestion allocator prefers a screen share over a camera.
type Source string

// The sources a track may have.
const (
	SourceCamera           Source = "camera"
	SourceMicrophone       Source = "microphone"
	SourceScreenShare      Source = "screen_share"
	SourceScreenShareAudio Source = "screen_share_audio"
)

// ParseSource returns the source named s, or the default for kind when s
// is empty (camera for video, microphone for audio); false when s names
// no source or one of the other kind (a screen share's audio on a video
// track).
func ParseSource(s string, kind webrtc.RTPCodecType) (Source, bool) {
	video := kind == webrtc.RTPCodecTypeVideo
	switch Source(s) {
	case "":
		if video {
			return SourceCamera, true
		}
		return SourceMicrophone, true
	case SourceCamera, SourceScreenShare:
		return Source(s), video
	case SourceMicrophone, SourceScreenShareAudio:
		return Source(s), !video
	}
	return "", false
}

// Source is the publication's source; the default for its kind until
// SetSource.
func (p *Publication) Source() Source {
	if s := p.source.Load(); s != nil {
		return *s
	}
	d, _ := ParseSource("", p.kind)
	return d
}

// SetSource records what the publisher says the track is. The edge sets
// it once, before it announces the publication.
func (p *Publication) SetSource(s Source) { p.source.Store(&s) }

// Muted reports whether the publisher (or the server API) muted the
// track.
func (p *Publication) Muted() bool { return p.muted.Load() }

// SetMuted mutes or unmutes the track and reports whether that changed
// anything. A muted track's packets go to no subscriber and its
// subscribers' keyframe requests are not passed on; on unmute every
// subscription resumes at the next keyframe, which is asked for at once,
// with its sequence numbers continuing where they stopped.
func (p *Publication) SetMuted(muted bool) bool {
	if p.muted.Swap(muted) == muted {
		return false
	}
	for _, s := range *p.subs.Load() {
		s.retarget()
	}
	return true
}
