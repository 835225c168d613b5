package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/redistest"
)

// adminToken mints an admin token with grants, signed with keys.
func adminToken(t *testing.T, keys auth.KeyPair, g auth.AdminGrants) string {
	t.Helper()
	s, err := keys.MintAdmin(auth.AdminToken{Name: "backend", Grants: g, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var roomAdmin = auth.AdminGrants{RoomAdmin: true}

// api sends one server API request to base with token and body (JSON
// when not nil), and returns the status and the decoded answer in out
// (when not nil).
func api(t *testing.T, method, url, token string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: answer %q: %v", method, url, b, err)
		}
	}
	return resp.StatusCode
}

// TestAPIAuthentication: the server API answers only an admin token
// signed with the API secret that grants what the route needs.
func TestAPIAuthentication(t *testing.T) {
	ts := startServer(t, nil)
	ts.dial(t, "r", "ann")
	forger := auth.KeyPair{Key: testKeys.Key, Secret: "not-the-secret-not-the-secret-0123"}
	for _, tc := range []struct {
		name, token, path string
		want              int
	}{
		{"no token", "", "/api/v1/rooms", http.StatusUnauthorized},
		{"garbage", "not.a.jwt", "/api/v1/rooms", http.StatusUnauthorized},
		{"forged admin token", adminToken(t, forger, roomAdmin), "/api/v1/rooms", http.StatusUnauthorized},
		{"participant token", ts.token(t, "r", "ann", bothGrants), "/api/v1/rooms", http.StatusForbidden},
		{"participant token on a room", ts.token(t, "r", "ann", bothGrants), "/api/v1/rooms/r/participants", http.StatusForbidden},
		{"room_list on a room", adminToken(t, testKeys, auth.AdminGrants{RoomList: true}), "/api/v1/rooms/r/participants", http.StatusForbidden},
		{"room_list lists", adminToken(t, testKeys, auth.AdminGrants{RoomList: true}), "/api/v1/rooms", http.StatusOK},
		{"room_admin on a room", adminToken(t, testKeys, roomAdmin), "/api/v1/rooms/r/participants", http.StatusOK},
		{"unknown room", adminToken(t, testKeys, roomAdmin), "/api/v1/rooms/nope/participants", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := api(t, http.MethodGet, ts.http+tc.path, tc.token, nil, nil); got != tc.want {
				t.Errorf("GET %s = %d; want %d", tc.path, got, tc.want)
			}
		})
	}
}

// TestAPIListAndRemove: the API lists the room and its participants
// with their tracks; a removed participant gets leave with reason
// removed, the others participant_left, and its token cannot join again
// while a new token can.
func TestAPIListAndRemove(t *testing.T) {
	ts := startServer(t, nil)
	admin := adminToken(t, testKeys, roomAdmin)
	ann := ts.dial(t, "r", "ann")
	publish(t, ann)
	bobToken := ts.token(t, "r", "bob", bothGrants)
	bob := ts.dialWith(t, bobToken, client.Options{})

	var rooms struct{ Rooms []apiRoom }
	waitFor(t, 10*time.Second, "both tracks listed", func() bool {
		api(t, http.MethodGet, ts.http+"/api/v1/rooms", admin, nil, &rooms)
		return len(rooms.Rooms) == 1 && rooms.Rooms[0].Tracks == 2
	})
	if r := rooms.Rooms[0]; r.Name != "r" || r.Participants != 2 {
		t.Errorf("rooms = %+v; want r with 2 participants", rooms.Rooms)
	}
	var ps struct{ Participants []apiParticipant }
	if got := api(t, http.MethodGet, ts.http+"/api/v1/rooms/r/participants", admin, nil, &ps); got != http.StatusOK {
		t.Fatalf("list participants = %d; want 200", got)
	}
	if len(ps.Participants) != 2 || ps.Participants[0].Identity != "ann" || ps.Participants[1].Identity != "bob" {
		t.Fatalf("participants = %+v; want ann and bob", ps.Participants)
	}
	sources := map[string]string{}
	for _, tr := range ps.Participants[0].Tracks {
		sources[tr.Kind] = tr.Source
		if tr.Muted || tr.Layers != 1 {
			t.Errorf("ann's %s track = %+v; want unmuted, 1 layer", tr.Kind, tr)
		}
	}
	if sources["audio"] != "microphone" || sources["video"] != "camera" {
		t.Errorf("ann's track sources = %v; want audio microphone, video camera", sources)
	}

	// Removal in the middle of a negotiation can leave a Pion ICE agent
	// behind (its gathering races the close); these tests are not about
	// that, so media flows first.
	awaitMedia(t, bob, ann)
	if got := api(t, http.MethodDelete, ts.http+"/api/v1/rooms/r/participants/bob", admin, nil, nil); got != http.StatusNoContent {
		t.Fatalf("remove bob = %d; want 204", got)
	}
	waitEnded(t, bob, signal.ReasonRemoved)
	waitEvent(t, ann, 5*time.Second, "participant_left for bob", func(m *signal.Message) bool {
		return m.Type == signal.TypeParticipantLeft && m.Participant.Identity == "bob"
	})
	if de := dialRefusal(t, ts, bobToken, ""); de.Status != http.StatusForbidden || de.Code != signal.ReasonRemoved {
		t.Errorf("bob's rejoin with the same token = %d %q; want 403 %q", de.Status, de.Code, signal.ReasonRemoved)
	}
	awaitMedia(t, ts.dial(t, "r", "bob"), ann) // a new token is the backend's new decision
	if got := api(t, http.MethodDelete, ts.http+"/api/v1/rooms/r/participants/nobody", admin, nil, nil); got != http.StatusNotFound {
		t.Errorf("remove nobody = %d; want 404", got)
	}
}

// waitEnded waits for the end of c's connection and checks the server's
// leave reason.
func waitEnded(t *testing.T, c *client.Client, reason string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("connection did not end within 5s; want a leave %q", reason)
	}
	if got := c.LeaveReason(); got != reason {
		t.Errorf("leave reason = %q; want %q", got, reason)
	}
}

// awaitMedia waits until c receives from's media.
func awaitMedia(t *testing.T, c, from *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.AwaitMedia(ctx, from.ID()); err != nil {
		t.Fatalf("AwaitMedia: %v", err)
	}
}

// trackOf waits for c's track_published of kind from identity.
func trackOf(t *testing.T, c *client.Client, identity, kind string) signal.Track {
	t.Helper()
	m := waitEvent(t, c, 10*time.Second, "track_published "+kind, func(m *signal.Message) bool {
		return m.Type == signal.TypeTrackPublished && m.Participant.Identity == identity && m.Track.Kind == kind
	})
	return *m.Track
}

// mutedEvent waits for c's track_muted of track id in state muted.
func mutedEvent(t *testing.T, c *client.Client, id string, muted bool) {
	t.Helper()
	waitEvent(t, c, 5*time.Second, "track_muted", func(m *signal.Message) bool {
		return m.Type == signal.TypeTrackMuted && m.Track.ID == id && m.Track.Muted == muted
	})
}

// ownMuted checks what c's client reports of its own track id once the
// track_muted that set it has arrived.
func ownMuted(t *testing.T, c *client.Client, id string, muted, byAPI bool) {
	t.Helper()
	if gotMuted, gotAPI := c.Muted(id); gotMuted != muted || gotAPI != byAPI {
		t.Errorf("Muted(%s) = %v, by API %v; want %v, by API %v", id, gotMuted, gotAPI, muted, byAPI)
	}
}

// TestMuteSignalled: a publisher's mute, and the API's, reach every
// member of the room with track_muted (the API's with reason api, which
// the publisher's client reports as a mute by the server), and the API
// lists the state.
func TestMuteSignalled(t *testing.T) {
	ts := startServer(t, nil)
	admin := adminToken(t, testKeys, roomAdmin)
	ann := ts.dial(t, "r", "ann")
	bob := ts.dial(t, "r", "bob")
	publish(t, ann)
	audio := trackOf(t, bob, "ann", "audio")
	awaitMedia(t, bob, ann)
	if own := trackOf(t, ann, "ann", "audio"); own.ID != audio.ID || own.MID == "" || audio.Source != "microphone" {
		t.Errorf("track_published to ann %+v, to bob %+v; want one id, ann's with its mid, source microphone", own, audio)
	}

	if err := ann.Send(&signal.Message{Type: signal.TypeMute, TrackID: audio.ID, Muted: new(true)}); err != nil {
		t.Fatal(err)
	}
	mutedEvent(t, bob, audio.ID, true)
	mutedEvent(t, ann, audio.ID, true)
	ownMuted(t, ann, audio.ID, true, false)

	var tr apiTrack
	url := ts.http + "/api/v1/rooms/r/participants/ann/tracks/" + audio.ID + "/mute"
	if got := api(t, http.MethodPost, url, admin, map[string]bool{"muted": false}, &tr); got != http.StatusOK || tr.Muted {
		t.Fatalf("API unmute = %d %+v; want 200 and muted false", got, tr)
	}
	mutedEvent(t, bob, audio.ID, false)
	mutedEvent(t, ann, audio.ID, false)
	ownMuted(t, ann, audio.ID, false, true)
	if got := api(t, http.MethodPost, url, admin, map[string]bool{"muted": true}, &tr); got != http.StatusOK || !tr.Muted {
		t.Fatalf("API mute = %d %+v; want 200 and muted true", got, tr)
	}
	mutedEvent(t, ann, audio.ID, true)
	ownMuted(t, ann, audio.ID, true, true)

	// A later joiner learns the state from joined.
	carl := ts.dial(t, "r", "carl")
	awaitMedia(t, carl, ann)
	var listed bool
	for _, p := range carl.Joined().Participants {
		for _, tr := range p.Tracks {
			listed = listed || tr.ID == audio.ID && tr.Muted
		}
	}
	if !listed {
		t.Errorf("carl's joined participants %+v; want ann's audio listed muted", carl.Joined().Participants)
	}

	for _, tc := range []struct {
		name string
		m    *signal.Message
		code string
	}{
		{"another's track", &signal.Message{Type: signal.TypeMute, TrackID: audio.ID, Muted: new(false)}, signal.CodeUnknownTrack},
		{"no muted", &signal.Message{Type: signal.TypeMute, TrackID: audio.ID}, signal.CodeBadMessage},
	} {
		if err := bob.Send(tc.m); err != nil {
			t.Fatal(err)
		}
		m := waitEvent(t, bob, 5*time.Second, tc.name, isType(signal.TypeError))
		if m.Code != tc.code {
			t.Errorf("%s: error %q; want %q", tc.name, m.Code, tc.code)
		}
	}
	if got := api(t, http.MethodPost, ts.http+"/api/v1/rooms/r/participants/ann/tracks/TR_nope/mute", admin, map[string]bool{"muted": true}, nil); got != http.StatusNotFound {
		t.Errorf("mute of an unknown track = %d; want 404", got)
	}
	if got := api(t, http.MethodPost, url, admin, map[string]string{"muted": "yes"}, nil); got != http.StatusBadRequest {
		t.Errorf("mute with a string = %d; want 400", got)
	}
}

// TestAPIMetadata: metadata set through the API reaches every member in
// participant_updated, is listed, and is bounded.
func TestAPIMetadata(t *testing.T) {
	ts := startServer(t, nil)
	admin := adminToken(t, testKeys, roomAdmin)
	ann := ts.dial(t, "r", "ann")
	bob := ts.dial(t, "r", "bob")
	url := ts.http + "/api/v1/rooms/r/participants/ann"
	var p apiParticipant
	if got := api(t, http.MethodPatch, url, admin, map[string]string{"metadata": `{"hand":"up"}`}, &p); got != http.StatusOK || p.Metadata != `{"hand":"up"}` {
		t.Fatalf("PATCH metadata = %d %+v; want 200 with the metadata", got, p)
	}
	for _, c := range []*client.Client{ann, bob} {
		waitEvent(t, c, 5*time.Second, "participant_updated", func(m *signal.Message) bool {
			return m.Type == signal.TypeParticipantUpdated && m.Participant.Identity == "ann" && m.Participant.Metadata == `{"hand":"up"}`
		})
	}
	if got := api(t, http.MethodGet, url, admin, nil, &p); got != http.StatusOK || p.Metadata != `{"hand":"up"}` {
		t.Errorf("GET ann = %d %+v; want her metadata", got, p)
	}
	long := string(bytes.Repeat([]byte("x"), MaxMetadataLen+1))
	if got := api(t, http.MethodPatch, url, admin, map[string]string{"metadata": long}, nil); got != http.StatusBadRequest {
		t.Errorf("PATCH %d bytes of metadata = %d; want 400", len(long), got)
	}
	if got := api(t, http.MethodPatch, url, admin, map[string]any{}, nil); got != http.StatusBadRequest {
		t.Errorf("PATCH without metadata = %d; want 400", got)
	}
}

// TestAPICloseRoom: closing a room ends every session in it with leave
// reason room_closed, and the room is gone.
func TestAPICloseRoom(t *testing.T) {
	ts := startServer(t, nil)
	admin := adminToken(t, testKeys, roomAdmin)
	ann, bob := ts.dial(t, "r", "ann"), ts.dial(t, "r", "bob")
	other := ts.dial(t, "s", "sam")
	if got := api(t, http.MethodDelete, ts.http+"/api/v1/rooms/r", admin, nil, nil); got != http.StatusNoContent {
		t.Fatalf("close room = %d; want 204", got)
	}
	for _, c := range []*client.Client{ann, bob} {
		waitEnded(t, c, signal.ReasonRoomClosed)
	}
	var rooms struct{ Rooms []apiRoom }
	api(t, http.MethodGet, ts.http+"/api/v1/rooms", admin, nil, &rooms)
	if len(rooms.Rooms) != 1 || rooms.Rooms[0].Name != "s" {
		t.Errorf("rooms after closing r = %+v; want only s", rooms.Rooms)
	}
	select {
	case <-other.Done():
		t.Error("a member of another room was disconnected")
	default:
	}
	if got := api(t, http.MethodDelete, ts.http+"/api/v1/rooms/r", admin, nil, nil); got != http.StatusNotFound {
		t.Errorf("close a closed room = %d; want 404", got)
	}
}

// TestAPIRoutedToOwner: two instances share a real Redis directory; a
// request about a room reaching the instance that does not hold it is
// proxied to the one that does, and answered from there.
func TestAPIRoutedToOwner(t *testing.T) {
	rd := redistest.Start(t)
	store, err := fleet.NewRedisStore(context.Background(), rd.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	a := startFleetServer(t, store, "")
	b := startFleetServer(t, store, "")
	waitRegistered(t, store, 2)
	admin := adminToken(t, testKeys, roomAdmin)
	ann := b.dialWith(t, b.token(t, "r", "ann", bothGrants), client.Options{})
	var ps struct{ Participants []apiParticipant }
	other := a // placement may have put the room at either: ask the other
	if ann.URL() == a.url {
		other = b
	}
	if got := api(t, http.MethodGet, other.http+"/api/v1/rooms/r/participants", admin, nil, &ps); got != http.StatusOK ||
		len(ps.Participants) != 1 || ps.Participants[0].Identity != "ann" {
		t.Fatalf("list at the non-owner = %d %+v; want 200 with ann", got, ps.Participants)
	}
	if got := api(t, http.MethodGet, other.http+"/api/v1/rooms/nowhere/participants", admin, nil, nil); got != http.StatusNotFound {
		t.Errorf("list of a room nowhere = %d; want 404", got)
	}
	if got := api(t, http.MethodGet, other.http+"/api/v1/rooms/r/participants", b.token(t, "r", "ann", bothGrants), nil, nil); got != http.StatusForbidden {
		t.Errorf("participant token at the non-owner = %d; want 403", got)
	}
	if got := api(t, http.MethodDelete, other.http+"/api/v1/rooms/r/participants/ann", admin, nil, nil); got != http.StatusNoContent {
		t.Fatalf("remove at the non-owner = %d; want 204", got)
	}
	waitEnded(t, ann, signal.ReasonRemoved)
}
