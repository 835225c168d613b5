// Package signal defines the messages of the signaling protocol (see
// edge/PROTOCOL.md) and decodes them from untrusted input. Both ends use
// it: the edge server and the Go participant in edge/client, so the wire
// shape is written down once.
package signal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// Version is the protocol version the `joined` message announces.
const Version = 1

// Message types. The first group is sent by the server, the second by
// clients; offer, answer and candidate go both ways.
const (
	TypeJoined            = "joined"
	TypeParticipantJoined = "participant_joined"
	TypeParticipantLeft   = "participant_left"
	TypeError             = "error"
	TypeDraining          = "draining"
	TypeRedirect          = "redirect"
	TypeLayers            = "layers"
	TypeSpeakers          = "speakers"
	TypeResumed           = "resumed"
	TypeSubscriptionState = "subscription_state"
	// track_published, track_unpublished, track_muted and
	// participant_updated describe the
	// room's tracks and participants (mute.go, api.go in edge).
	TypeTrackPublished     = "track_published"
	TypeTrackUnpublished   = "track_unpublished"
	TypeTrackMuted         = "track_muted"
	TypeParticipantUpdated = "participant_updated"

	TypeOffer     = "offer"
	TypeAnswer    = "answer"
	TypeCandidate = "candidate"
	TypeLeave     = "leave"

	TypeTrackSettings = "track_settings"
	// TypeICERestart asks the server to restart ICE on the subscriber
	// connection: it answers with a subscriber offer with new ICE
	// credentials. The publisher restarts with an offer of its own.
	TypeICERestart = "ice_restart"
	// TypeMute is a publisher muting or unmuting one of its tracks.
	TypeMute = "mute"
)

// MaxSources bounds an offer's sources map: more entries than a
// participant may have tracks is a malformed offer, whatever the limit.
const MaxSources = 64

// Qualities a subscriber may ask for in track_settings, lowest first: the
// index of each is the simulcast layer it caps at (see QualityLayer).
const (
	QualityLow    = "low"
	QualityMedium = "medium"
	QualityHigh   = "high"
)

// LayerQuality is the quality that caps at layer (0 low, 1 medium, 2
// high), or "" for a layer out of range (a paused track).
func LayerQuality(layer int) string {
	switch layer {
	case 0:
		return QualityLow
	case 1:
		return QualityMedium
	case 2:
		return QualityHigh
	}
	return ""
}

// QualityLayer returns the layer index a quality caps at (0 low, 1
// medium, 2 high; "" is high, the default) and whether q is known.
func QualityLayer(q string) (int, bool) {
	switch q {
	case QualityLow:
		return 0, true
	case QualityMedium:
		return 1, true
	case QualityHigh, "":
		return 2, true
	}
	return 0, false
}

// MaxSide bounds track_settings' max_width and max_height: VP8 codes 14
// bits per side, and no camera or screen we meet goes beyond.
const MaxSide = 16384

func sideOK(px int) bool { return px >= 0 && px <= MaxSide }

// Targets name one of a participant's two PeerConnections.
const (
	// TargetPublisher is the connection the client offers and sends on.
	TargetPublisher = "publisher"
	// TargetSubscriber is the connection the server offers and sends on.
	TargetSubscriber = "subscriber"
)

// Error codes of `error` messages. The set is fixed so it can label metrics.
const (
	CodeBadMessage       = "bad_message"
	CodeUnknownType      = "unknown_type"
	CodeInvalidSDP       = "invalid_sdp"
	CodeCandidateLimit   = "candidate_limit"
	CodeInvalidCandidate = "invalid_candidate"
	CodeTrackLimit       = "track_limit"
	CodeNotPermitted     = "not_permitted"
	CodeRateLimited      = "rate_limited"
	CodeUnknownTrack     = "unknown_track"
	// CodeInvalidMessage refuses a known message whose values are out of
	// their set (a track_settings quality); bad_message is for the shape.
	CodeInvalidMessage = "invalid_message"
)

// Leave reasons the server sends before it ends a session.
const (
	ReasonServerShutdown    = "server_shutdown"
	ReasonSlowClient        = "slow_client"
	ReasonICEFailed         = "ice_failed"
	ReasonDuplicateIdentity = "duplicate_identity"
	ReasonTimeout           = "timeout"
	// ReasonRemoved: the server API removed the participant; its token
	// cannot join again.
	ReasonRemoved = "removed"
	// ReasonRoomClosed: the server API closed the room.
	ReasonRoomClosed = "room_closed"
)

// ReasonRoomElsewhere is the reason of a `redirect`: the room lives on
// another instance of the fleet.
const ReasonRoomElsewhere = "room_elsewhere"

// ReasonAPI is the reason of a `track_muted` the server API caused: the
// publisher's client applies it to its own track (disables it on a
// mute), where a `track_muted` without reason is the echo of its own.
const ReasonAPI = "api"

// Participant names a participant of a room: its id (unique per session,
// and the msid stream id of its forwarded tracks) and its identity.
type Participant struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	// Metadata is the application's text about the participant, set by
	// the server API; "" until then.
	Metadata string `json:"metadata,omitempty"`
	// Tracks are the participant's published tracks, in `joined`'s
	// participants list (later ones come in track_published).
	Tracks []Track `json:"tracks,omitempty"`
}

// Track describes one published track: its id (the subscriber-side track
// id), kind ("audio" or "video"), source (camera, microphone,
// screen_share, screen_share_audio) and whether it is muted.
type Track struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Source string `json:"source"`
	Muted  bool   `json:"muted"`
	// MID is the publisher connection's mid of the track, in the
	// track_published sent to its publisher only.
	MID string `json:"mid,omitempty"`
}

// ICEServer is one entry of `joined`'s ice_servers, in the browser's
// RTCIceServer shape.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Message is every message of the protocol; Type says which fields it
// uses. Fields another type does not use stay zero and are not encoded.
// Participants and ICEServers are encoded whenever non-nil, so `joined`
// always carries both lists, empty or not.
type Message struct {
	Type string `json:"type"`

	// joined
	Protocol     int           `json:"protocol,omitempty"`
	Room         string        `json:"room,omitempty"`
	Participants []Participant `json:"participants,omitzero"`
	ICEServers   []ICEServer   `json:"ice_servers,omitzero"`
	// joined (the participant itself), participant_joined, participant_left
	Participant *Participant `json:"participant,omitempty"`

	// joined, resumed: the credential that resumes this session once
	// (see PROTOCOL.md, "Resuming"), and how long the server keeps the
	// session after its WebSocket is lost
	Resume        string `json:"resume,omitempty"`
	ResumeGraceMS int64  `json:"resume_grace_ms,omitempty"`

	// offer, answer, candidate, ice_restart; error: the connection whose
	// offer or answer a candidate_limit refused
	Target string `json:"target,omitempty"`
	SDP    string `json:"sdp,omitempty"`
	// offer, answer, and an error refusing a publisher offer: the
	// offerer's number for the offer, which its answer (or refusal)
	// echoes, so a late answer to an abandoned offer is never applied to
	// the next one (PROTOCOL.md, "Offer ids"). 0 (absent): not numbered.
	OfferID   uint64                   `json:"offer_id,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	// offer (publisher): what each track is, by its mid; a track with
	// none gets its kind's default source
	Sources map[string]string `json:"sources,omitempty"`

	// track_published, track_muted: the track (and Participant its
	// publisher)
	Track *Track `json:"track,omitempty"`
	// mute: the track's new state (TrackID names it); required
	Muted *bool `json:"muted,omitempty"`

	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`

	// draining
	Deadline time.Time `json:"deadline,omitzero"`
	// draining (where the room moved, when it did), redirect (where the
	// room lives): the signaling URL to join at, without access_token
	URL string `json:"url,omitempty"`

	// leave (server to client), redirect; subscription_state: why the
	// server paused the track ("congestion"), absent when it did not
	Reason string `json:"reason,omitempty"`

	// track_settings, layers, subscription_state: a publication's id
	// (the subscriber-side track id)
	TrackID string `json:"track_id,omitempty"`
	// track_settings: the highest quality wanted ("" is high) and whether
	// to stop forwarding the track to this subscriber; subscription_state:
	// the highest quality the subscriber's bandwidth allows now (absent
	// while paused)
	Quality string `json:"quality,omitempty"`
	Paused  bool   `json:"paused,omitempty"`
	// track_settings: the size the subscriber shows the track at, in
	// pixels (0 or absent bounds neither side); the server forwards the
	// smallest layer that covers it, at most Quality's
	MaxWidth  int `json:"max_width,omitempty"`
	MaxHeight int `json:"max_height,omitempty"`
	// layers: the publisher connection's mid of the track, and the RIDs
	// some subscriber needs; encoded whenever non-nil, so "none" is [].
	MID    string   `json:"mid,omitempty"`
	Active []string `json:"active,omitzero"`

	// speakers: who speaks now, loudest first; encoded whenever non-nil,
	// so "nobody" is [].
	Speakers []Speaker `json:"speakers,omitzero"`
}

// Speaker is one entry of `speakers`: a participant and its smoothed
// audio level, 0 (silence) to 1 (full scale), linear amplitude.
type Speaker struct {
	ID       string  `json:"id"`
	Identity string  `json:"identity"`
	Level    float64 `json:"level"`
}

// Error is a message refused by Decode: Code is one of the Code values, fit
// to send back in an `error` message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return "signal: " + e.Code + ": " + e.Message }

// Encode returns m as JSON text.
func Encode(m *Message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("signal: encode %s: %w", m.Type, err)
	}
	return b, nil
}

// Parse decodes any message, from either side: it must be a JSON object
// whose fields have the right types and whose type is a non-empty string.
// It does not check that the type is known: Decode does, for a client's
// messages; a client parses the server's with Parse and ignores types it
// does not know, which a newer server may add.
func Parse(data []byte) (*Message, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, &Error{Code: CodeBadMessage, Message: "a message must be a JSON object"}
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, &Error{Code: CodeBadMessage, Message: "malformed message: " + describe(err)}
	}
	if m.Type == "" {
		return nil, &Error{Code: CodeBadMessage, Message: "a message needs a string type"}
	}
	return &m, nil
}

// describe shortens a JSON error to what the sender needs, without echoing
// its input back.
func describe(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	}
	return "not valid JSON"
}

// Decode decodes a client's message and checks it: a known client type
// with the fields it needs. Its errors are *Error.
func Decode(data []byte) (*Message, error) {
	m, err := Parse(data)
	if err != nil {
		return nil, err
	}
	switch m.Type {
	case TypeOffer:
		if len(m.Sources) > MaxSources {
			return nil, &Error{Code: CodeBadMessage, Message: fmt.Sprintf("an offer names at most %d sources", MaxSources)}
		}
		return m, needSDP(m, TargetPublisher)
	case TypeMute:
		if m.TrackID == "" || m.Muted == nil {
			return nil, &Error{Code: CodeBadMessage, Message: "mute needs a track_id and muted"}
		}
		return m, nil
	case TypeAnswer:
		return m, needSDP(m, TargetSubscriber)
	case TypeCandidate:
		return m, needCandidate(m)
	case TypeLeave:
		return m, nil
	case TypeTrackSettings:
		return m, needTrackSettings(m)
	case TypeICERestart:
		if m.Target != TargetSubscriber {
			return m, &Error{Code: CodeBadMessage, Message: `ice_restart needs target "subscriber" (the publisher restarts with an offer)`}
		}
		return m, nil
	}
	return nil, &Error{Code: CodeUnknownType, Message: fmt.Sprintf("unknown message type %.32q", m.Type)}
}

func needSDP(m *Message, target string) error {
	if m.Target != target {
		return &Error{Code: CodeBadMessage, Message: fmt.Sprintf("%s needs target %q", m.Type, target)}
	}
	if m.SDP == "" {
		return &Error{Code: CodeInvalidSDP, Message: m.Type + " needs an sdp"}
	}
	return nil
}

func needCandidate(m *Message) error {
	if m.Target != TargetPublisher && m.Target != TargetSubscriber {
		return &Error{Code: CodeBadMessage, Message: `candidate needs target "publisher" or "subscriber"`}
	}
	if m.Candidate == nil {
		return &Error{Code: CodeInvalidCandidate, Message: "candidate needs a candidate object"}
	}
	return nil
}

func needTrackSettings(m *Message) error {
	if m.TrackID == "" {
		return &Error{Code: CodeBadMessage, Message: "track_settings needs a track_id"}
	}
	if _, ok := QualityLayer(m.Quality); !ok {
		return &Error{Code: CodeInvalidMessage, Message: `quality must be "low", "medium" or "high"`}
	}
	if !sideOK(m.MaxWidth) || !sideOK(m.MaxHeight) {
		return &Error{Code: CodeInvalidMessage, Message: fmt.Sprintf("max_width and max_height must be from 0 to %d pixels", MaxSide)}
	}
	return nil
}
