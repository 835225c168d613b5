package signal

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantType string
		wantCode string
	}{
		{"offer", `{"type":"offer","target":"publisher","sdp":"v=0"}`, TypeOffer, ""},
		{"answer", `{"type":"answer","target":"subscriber","sdp":"v=0"}`, TypeAnswer, ""},
		{"candidate", `{"type":"candidate","target":"subscriber","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0"}}`, TypeCandidate, ""},
		{"end of candidates", `{"type":"candidate","target":"publisher","candidate":{"candidate":""}}`, TypeCandidate, ""},
		{"leave", ` {"type":"leave"} `, TypeLeave, ""},
		{"unknown fields ignored", `{"type":"leave","x":[1,2,{}]}`, TypeLeave, ""},
		{"empty", ``, "", CodeBadMessage},
		{"not an object", `[1,2]`, "", CodeBadMessage},
		{"string", `"offer"`, "", CodeBadMessage},
		{"truncated", `{"type":"offer"`, "", CodeBadMessage},
		{"type not a string", `{"type":5}`, "", CodeBadMessage},
		{"no type", `{"sdp":"v=0"}`, "", CodeBadMessage},
		{"unknown type", `{"type":"subscribe"}`, "", CodeUnknownType},
		{"server type from client", `{"type":"joined"}`, "", CodeUnknownType},
		{"offer for subscriber", `{"type":"offer","target":"subscriber","sdp":"v=0"}`, "", CodeBadMessage},
		{"answer for publisher", `{"type":"answer","target":"publisher","sdp":"v=0"}`, "", CodeBadMessage},
		{"offer without sdp", `{"type":"offer","target":"publisher"}`, "", CodeInvalidSDP},
		{"sdp not a string", `{"type":"offer","target":"publisher","sdp":{}}`, "", CodeBadMessage},
		{"candidate without target", `{"type":"candidate","candidate":{"candidate":"x"}}`, "", CodeBadMessage},
		{"candidate without candidate", `{"type":"candidate","target":"publisher"}`, "", CodeInvalidCandidate},
		{"candidate not an object", `{"type":"candidate","target":"publisher","candidate":"x"}`, "", CodeBadMessage},
		{"track_settings", `{"type":"track_settings","track_id":"TR_1","quality":"low","paused":false}`, TypeTrackSettings, ""},
		{"track_settings default quality", `{"type":"track_settings","track_id":"TR_1","paused":true}`, TypeTrackSettings, ""},
		{"track_settings without track", `{"type":"track_settings","quality":"low"}`, "", CodeBadMessage},
		{"track_settings bad quality", `{"type":"track_settings","track_id":"TR_1","quality":"ultra"}`, "", CodeInvalidMessage},
		{"track_settings by size", `{"type":"track_settings","track_id":"TR_1","max_width":320,"max_height":180}`, TypeTrackSettings, ""},
		{"track_settings largest size", `{"type":"track_settings","track_id":"TR_1","max_width":16384,"max_height":0}`, TypeTrackSettings, ""},
		{"track_settings negative width", `{"type":"track_settings","track_id":"TR_1","max_width":-1}`, "", CodeInvalidMessage},
		{"track_settings absurd height", `{"type":"track_settings","track_id":"TR_1","max_height":16385}`, "", CodeInvalidMessage},
		{"track_settings fractional width", `{"type":"track_settings","track_id":"TR_1","max_width":320.5}`, "", CodeBadMessage},
		{"track_settings paused not a bool", `{"type":"track_settings","track_id":"TR_1","paused":"yes"}`, "", CodeBadMessage},
		{"layers from client", `{"type":"layers","track_id":"TR_1","active":[]}`, "", CodeUnknownType},
		{"offer with sources", `{"type":"offer","target":"publisher","sdp":"v=0","sources":{"0":"microphone","1":"screen_share"}}`, TypeOffer, ""},
		{"offer with too many sources", `{"type":"offer","target":"publisher","sdp":"v=0","sources":{` + manySources(MaxSources+1) + `}}`, "", CodeBadMessage},
		{"sources not strings", `{"type":"offer","target":"publisher","sdp":"v=0","sources":{"0":1}}`, "", CodeBadMessage},
		{"mute", `{"type":"mute","track_id":"TR_1","muted":true}`, TypeMute, ""},
		{"unmute", `{"type":"mute","track_id":"TR_1","muted":false}`, TypeMute, ""},
		{"mute without muted", `{"type":"mute","track_id":"TR_1"}`, "", CodeBadMessage},
		{"mute without track", `{"type":"mute","muted":true}`, "", CodeBadMessage},
		{"mute not a bool", `{"type":"mute","track_id":"TR_1","muted":"yes"}`, "", CodeBadMessage},
		{"track_muted from client", `{"type":"track_muted","track":{"id":"TR_1"}}`, "", CodeUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			var se *Error
			switch {
			case tt.wantCode == "" && err != nil:
				t.Fatalf("Decode(%s) error %v; want a %s message", tt.in, err, tt.wantType)
			case tt.wantCode == "" && m.Type != tt.wantType:
				t.Fatalf("Decode(%s).Type = %q; want %q", tt.in, m.Type, tt.wantType)
			case tt.wantCode != "" && !errors.As(err, &se):
				t.Fatalf("Decode(%s) = %+v, %v; want *Error %s", tt.in, m, err, tt.wantCode)
			case tt.wantCode != "" && se.Code != tt.wantCode:
				t.Fatalf("Decode(%s) code = %s; want %s", tt.in, se.Code, tt.wantCode)
			}
		})
	}
}

// manySources is n "mid":"camera" entries of a sources object.
func manySources(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("%q:\"camera\"", strconv.Itoa(i))
	}
	return strings.Join(parts, ",")
}

func TestEncodeJoinedAlwaysHasLists(t *testing.T) {
	b, err := Encode(&Message{Type: TypeJoined, Protocol: Version, Room: "demo",
		Participant: &Participant{ID: "PA_1", Identity: "a"}, Participants: []Participant{}, ICEServers: []ICEServer{}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"joined","protocol":1,"room":"demo","participants":[],"ice_servers":[],"participant":{"id":"PA_1","identity":"a"}}`
	if string(b) != want {
		t.Errorf("Encode(joined) = %s; want %s", b, want)
	}
}

func TestEncodeLayersAlwaysHasActive(t *testing.T) {
	b, err := Encode(&Message{Type: TypeLayers, TrackID: "TR_1", MID: "0", Active: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"layers","track_id":"TR_1","mid":"0","active":[]}`
	if string(b) != want {
		t.Errorf("Encode(layers) = %s; want %s", b, want)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	mid := "0"
	deadline := time.Date(2026, 11, 26, 10, 0, 30, 0, time.UTC)
	msgs := []*Message{
		{Type: TypeDraining, Deadline: deadline},
		{Type: TypeDraining, Deadline: deadline, URL: "wss://media-2.example.com/v1/rtc"},
		{Type: TypeRedirect, URL: "wss://media-2.example.com/v1/rtc", Reason: ReasonRoomElsewhere},
		{Type: TypeLeave, Reason: ReasonServerShutdown},
		{Type: TypeError, Code: CodeCandidateLimit, Message: "at most 50"},
		{Type: TypeCandidate, Target: TargetPublisher, Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:1", SDPMid: &mid}},
	}
	for _, in := range msgs {
		b, err := Encode(in)
		if err != nil {
			t.Fatalf("Encode(%+v) error: %v", in, err)
		}
		out, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(%s) error: %v", b, err)
		}
		again, _ := Encode(out)
		if string(again) != string(b) {
			t.Errorf("Parse(Encode(m)) re-encodes as %s; want %s", again, b)
		}
		if in.Type == TypeDraining && !strings.Contains(string(b), `"deadline":"2026-11-26T10:00:30Z"`) {
			t.Errorf("Encode(draining) = %s; want an RFC 3339 deadline", b)
		}
		if in.URL != "" && !strings.Contains(string(b), `"url":"wss://media-2.example.com/v1/rtc"`) {
			t.Errorf("Encode(%s) = %s; want its url", in.Type, b)
		}
	}
}

func TestLayerQuality(t *testing.T) {
	for layer := range 3 {
		q := LayerQuality(layer)
		if got, ok := QualityLayer(q); !ok || got != layer {
			t.Errorf("QualityLayer(LayerQuality(%d) = %q) = %d, %v; want %d, true", layer, q, got, ok, layer)
		}
	}
	for _, layer := range []int{-1, 3} {
		if q := LayerQuality(layer); q != "" {
			t.Errorf("LayerQuality(%d) = %q; want \"\"", layer, q)
		}
	}
	b, err := Encode(&Message{Type: TypeSubscriptionState, TrackID: "TR_1", Reason: "congestion", Quality: LayerQuality(-1)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"subscription_state","reason":"congestion","track_id":"TR_1"}`; string(b) != want {
		t.Errorf("Encode(paused subscription_state) = %s; want %s", b, want)
	}
}
