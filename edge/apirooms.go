package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/media-service/media-service/edge/fleet"
)

// The fleet-wide room list (docs/API.md, "Several instances"). Alone, an
// instance lists its own rooms. In a fleet, the instance the request
// reaches reads the directory's entries and asks each owner for its own
// rooms, in parallel, through the same path a proxied request takes
// (the owner's MEDIA_PUBLIC_URL, the caller's token, X-Media-Forwarded,
// which makes the owner answer with its own rooms only). A room whose
// owner is gone or does not answer in time is listed with an error and
// no counts: one dead instance never makes the whole list fail.

// Fleet-wide listing bounds.
const (
	// listOwnersTimeout bounds the whole gathering: an owner that has not
	// answered by then is owner_unreachable. It is below the 10 s a
	// proxied request may take, since one slow owner holds the answer
	// of every other.
	listOwnersTimeout = 5 * time.Second
	// listOwnersAtOnce bounds the owners asked at the same time.
	listOwnersAtOnce = 16
	// maxOwnerAnswer bounds the body read from one owner: a room's line
	// is under 200 bytes, and an instance holds at most MaxRooms.
	maxOwnerAnswer = 8 << 20
)

// Errors of a listed room whose owner gave no counts.
const (
	listOwnerGone        = "owner_gone"        // the entry's owner is not registered (any more)
	listOwnerUnreachable = "owner_unreachable" // the owner did not answer in time, or not with a list
)

// roomList is the answer of GET /api/v1/rooms.
type roomList struct {
	Rooms []apiRoom `json:"rooms"`
	// Truncated reports that the directory holds more rooms than one
	// list carries (fleet.MaxListed).
	Truncated bool `json:"truncated,omitempty"`
}

func (srv *Server) handleListRooms(c echo.Context) error {
	if srv.routing == nil || c.Request().Header.Get(forwardedHeader) != "" {
		return c.JSON(http.StatusOK, roomList{Rooms: srv.localRooms()})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), placeTimeout)
	entries, truncated, err := srv.routing.dir.Rooms(ctx)
	cancel()
	if err != nil {
		return c.JSON(http.StatusServiceUnavailable, apiError{Code: "directory_unavailable",
			Message: "the room directory cannot be asked now; try again"})
	}
	ctx, cancel = context.WithTimeout(c.Request().Context(), listOwnersTimeout)
	defer cancel()
	rooms := srv.gatherRooms(ctx, entries, c.Request().Header.Get(echo.HeaderAuthorization))
	return c.JSON(http.StatusOK, roomList{Rooms: rooms, Truncated: truncated})
}

// localRooms lists this instance's rooms that have a member, by name,
// each naming this instance in a fleet.
func (srv *Server) localRooms() []apiRoom {
	rooms := srv.rooms.list()
	if srv.routing != nil {
		self := srv.routing.dir.Self().ID
		for i := range rooms {
			rooms[i].Instance = self
		}
	}
	slices.SortFunc(rooms, func(a, b apiRoom) int { return strings.Compare(a.Name, b.Name) })
	return rooms
}

// gatherRooms describes each room of entries from its owner's own list:
// this instance's from memory, the others' asked in parallel with token.
// A room its live owner does not list has emptied since: it is left out.
func (srv *Server) gatherRooms(ctx context.Context, entries []fleet.RoomEntry, token string) []apiRoom {
	self := srv.routing.dir.Self().ID
	owners := make(map[string]fleet.Instance)
	for _, e := range entries {
		if e.Live {
			owners[e.Owner.ID] = e.Owner
		}
	}
	answers := make(map[string]map[string]apiRoom, len(owners)) // owner id -> its rooms; nil: no answer
	if _, ok := owners[self]; ok {
		answers[self] = byName(srv.localRooms())
		delete(owners, self)
	}
	var mu sync.Mutex // guards answers while the owners are asked
	var wg sync.WaitGroup
	sem := make(chan struct{}, listOwnersAtOnce)
	for id, owner := range owners {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rooms, err := srv.ownerRooms(ctx, owner, token)
			if err != nil {
				srv.log.Info("api_list_owner_failed", "owner", id, "err", err)
			}
			mu.Lock()
			answers[id] = rooms
			mu.Unlock()
		})
	}
	wg.Wait()
	out := make([]apiRoom, 0, len(entries))
	for _, e := range entries {
		r, listed := answers[e.Owner.ID][e.Room]
		switch {
		case !e.Live:
			out = append(out, apiRoom{Name: e.Room, Instance: e.Owner.ID, Error: listOwnerGone})
		case answers[e.Owner.ID] == nil:
			out = append(out, apiRoom{Name: e.Room, Instance: e.Owner.ID, Error: listOwnerUnreachable})
		case listed:
			out = append(out, r)
		}
	}
	return out
}

// ownerRooms asks owner for its own rooms with the caller's token, and
// returns them by name.
func (srv *Server) ownerRooms(ctx context.Context, owner fleet.Instance, token string) (map[string]apiRoom, error) {
	base, err := srv.ownerURL(owner)
	if err != nil {
		return nil, err
	}
	u := base.JoinPath("/api/v1/rooms")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(echo.HeaderAuthorization, token)
	req.Header.Set(forwardedHeader, srv.routing.dir.Self().ID)
	resp, err := srv.routing.siblings.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list rooms at %s: status %d", owner.ID, resp.StatusCode)
	}
	var list roomList
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxOwnerAnswer)).Decode(&list); err != nil {
		return nil, fmt.Errorf("list rooms at %s: %w", owner.ID, err)
	}
	for i := range list.Rooms {
		list.Rooms[i].Instance, list.Rooms[i].Error = owner.ID, "" // the directory's word, not the owner's
	}
	return byName(list.Rooms), nil
}

// byName indexes rooms by name; never nil.
func byName(rooms []apiRoom) map[string]apiRoom {
	m := make(map[string]apiRoom, len(rooms))
	for _, r := range rooms {
		m[r.Name] = r
	}
	return m
}
