package fleet_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/media-service/media-service/edge/fleet"
)

// Many goroutines on several Fleets placing the same new rooms at once
// all get one owner per room, every time.
func TestPlaceRaceHasOneOwner(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		open, _ := b.start(t)
		var members []*member
		for i := range 3 {
			members = append(members, join(t, open(t), fmt.Sprintf("m%d", i), "ams", fleet.Load{}))
		}
		const rooms, callers = 20, 8
		owners := make([][]string, rooms)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for r := range rooms {
			for c := range callers {
				m := members[(r+c)%len(members)]
				wg.Go(func() {
					owner, err := m.Place(t.Context(), fmt.Sprintf("room-%d", r), "ams")
					if err != nil {
						t.Errorf("Place(room-%d) on %s: %v", r, m.Self().ID, err)
						return
					}
					mu.Lock()
					owners[r] = append(owners[r], owner.ID)
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		for r, got := range owners {
			for _, id := range got {
				if id != got[0] {
					t.Errorf("owners of room-%d = %v; want one owner", r, got)
					break
				}
			}
		}
	})
}
