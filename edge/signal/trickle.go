package signal

import (
	"sync"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Trickle orders one PeerConnection's local ICE candidates after the
// description they belong to. Pion gathers as soon as the local
// description is set, so a candidate could otherwise be sent before the
// offer or answer that must precede it, and the peer, having no remote
// description yet, would have to drop it. Candidates are held until Open,
// then sent in order; after Open they go straight out (until Hold).
type Trickle struct {
	send func(webrtc.ICECandidateInit) // called with mu held, so in order

	mu     sync.Mutex // guards open and queued, and orders calls of send
	open   bool
	queued []webrtc.ICECandidateInit
}

// NewTrickle returns a closed Trickle that hands candidates to send.
func NewTrickle(send func(webrtc.ICECandidateInit)) *Trickle {
	return &Trickle{send: send}
}

// Candidate is the PeerConnection's OnICECandidate handler. The nil that
// marks the end of gathering is not sent: the protocol has no use for it.
func (t *Trickle) Candidate(c *webrtc.ICECandidate) {
	if c == nil {
		return
	}
	init := c.ToJSON()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		t.queued = append(t.queued, init)
		return
	}
	t.send(init)
}

// Hold holds candidates again until the next Open: an ICE restart's new
// description has not been sent yet, and its candidates must follow it.
func (t *Trickle) Hold() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open = false
}

// Open sends what is held and lets later candidates through. Call it once
// the description has been sent; calling it again does nothing.
func (t *Trickle) Open() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open {
		return
	}
	t.open = true
	for _, c := range t.queued {
		t.send(c)
	}
	t.queued = nil
}

// ICEUfrag is a description's ICE username fragment, which names its ICE
// generation: session level, or its first media section's (a bundled
// description has one).
func ICEUfrag(d *sdp.SessionDescription) string {
	if v, ok := d.Attribute("ice-ufrag"); ok {
		return v
	}
	for _, m := range d.MediaDescriptions {
		if v, ok := m.Attribute("ice-ufrag"); ok {
			return v
		}
	}
	return ""
}

// DescriptionUfrag is the ICE username fragment of d, which may be one of
// Pion's own descriptions (a PeerConnection's RemoteDescription): it
// parses a copy, since Unmarshal caches its result in the description,
// which Pion reads on its own goroutines.
func DescriptionUfrag(d *webrtc.SessionDescription) string {
	parsed, err := (&webrtc.SessionDescription{Type: d.Type, SDP: d.SDP}).Unmarshal()
	if err != nil {
		return ""
	}
	return ICEUfrag(parsed)
}
