package load

import (
	"maps"
	"testing"

	"github.com/media-service/media-service/edge/signal"
)

func TestPlaceSpreadsJoinsOverURLs(t *testing.T) {
	urls := []string{"http://a:1", "http://b:2", "https://c:3"}
	tests := []struct {
		placement string
		joins     int
		want      map[string]int // nil: only the total is known
	}{
		{PlaceRoundRobin, 7, map[string]int{"http://a:1": 3, "http://b:2": 2, "https://c:3": 2}},
		{PlaceRandom, 300, nil},
	}
	for _, tt := range tests {
		t.Run(tt.placement, func(t *testing.T) {
			tg := &serverTarget{urls: urls, placement: tt.placement, placed: map[string]int{}}
			for _, u := range urls {
				tg.rtc = append(tg.rtc, rtcURL(u))
			}
			dialled := map[string]int{}
			for range tt.joins {
				dialled[tg.place()]++
			}
			total := 0
			for i, u := range urls {
				if dialled[tg.rtc[i]] != tg.placed[u] {
					t.Errorf("%s: dialled %s %d times, counted %d for %s", tt.placement, tg.rtc[i], dialled[tg.rtc[i]], tg.placed[u], u)
				}
				total += tg.placed[u]
				if tt.want == nil && tg.placed[u] == 0 {
					t.Errorf("%s: no join of %d through %s", tt.placement, tt.joins, u)
				}
			}
			if total != tt.joins || (tt.want != nil && !maps.Equal(tg.placed, tt.want)) {
				t.Errorf("%s: placed %v; want %d joins (%v)", tt.placement, tg.placed, tt.joins, tt.want)
			}
		})
	}
}

// redirectedClient stands for a client that followed n redirects to join,
// as edge/client's Client reports them once the fleet's routing is merged.
type redirectedClient struct{ n int }

func (c redirectedClient) Redirects() int { return c.n }

// TestRedirectsAreCountedNotFailures: the redirects joins followed to the
// room's instance are counted in the report, and unlike a server `error`
// or `leave` they do not fail the run. A client without the count (today's
// edge/client) counts none.
func TestRedirectsAreCountedNotFailures(t *testing.T) {
	tg := &serverTarget{urls: []string{"http://a:1", "http://b:2"}, placement: PlaceRoundRobin,
		placed: map[string]int{"http://a:1": 2, "http://b:2": 1}, clientDiag: &diagWriter{}}
	for _, c := range []any{redirectedClient{1}, redirectedClient{0}, redirectedClient{1}, &struct{}{}} {
		tg.events.countRedirects(c)
	}
	rep := &Report{Joins: &joinReport{Attempted: 3, Joined: 3}}
	tg.finish(rep)
	if rep.Joins.Redirected != 2 || len(rep.Failures) != 0 || len(rep.ServerEvents) != 0 {
		t.Errorf("after 2 redirects: redirected %d, failures %q, events %v; want 2, none, none", rep.Joins.Redirected, rep.Failures, rep.ServerEvents)
	}
	if p := rep.Placement; p == nil || p.Policy != PlaceRoundRobin || p.Joins["http://a:1"] != 2 || p.Joins["http://b:2"] != 1 {
		t.Errorf("placement = %+v; want round-robin with 2 and 1 joins", p)
	}
	tg.events.observe(&signal.Message{Type: signal.TypeLeave, Reason: "kicked"})
	tg.finish(rep)
	if len(rep.Failures) != 1 {
		t.Errorf("after a leave: failures %q; want one", rep.Failures)
	}
}
