package load

import (
	"strings"
	"testing"
	"time"
)

// TestJoinSplitByRedirect: the timed joins are reported apart by whether
// they followed a redirect, and the table shows both lines only when some
// join was redirected (a single instance's report is as before).
func TestJoinSplitByRedirect(t *testing.T) {
	jr := &joinResult{}
	for _, d := range []time.Duration{100, 110, 120, 200} {
		jr.direct.add(d * time.Millisecond)
		jr.firstMedia.add(d * time.Millisecond)
	}
	for _, d := range []time.Duration{150, 300} {
		jr.redirected.add(d * time.Millisecond)
		jr.firstMedia.add(d * time.Millisecond)
	}
	j := jr.report()
	want := joinSplit{Joins: 4, FirstMediaP50: 110, FirstMediaP95: 200}
	if j.Direct != want {
		t.Errorf("Direct = %+v; want %+v", j.Direct, want)
	}
	want = joinSplit{Joins: 2, FirstMediaP50: 150, FirstMediaP95: 300}
	if j.ViaRedirect != want {
		t.Errorf("ViaRedirect = %+v; want %+v", j.ViaRedirect, want)
	}
	var b strings.Builder
	(&Report{Joins: j}).table(&b)
	for _, line := range []string{"join to first media, direct\tp50 110.0 ms\tp95 200.0 ms\t(4 joins)", "join to first media, redirected\tp50 150.0 ms\tp95 300.0 ms\t(2 joins)"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("table lacks %q:\n%s", line, b.String())
		}
	}
	b.Reset()
	(&Report{Joins: (&joinResult{}).report()}).table(&b)
	if strings.Contains(b.String(), "redirected\tp50") {
		t.Errorf("table without redirects shows the split:\n%s", b.String())
	}
}

// TestMoveGap: a mover's gap runs from the last packet of a kind on its
// old session to the first on its new one; an overlap is no gap, and a
// kind missing on either side has none to report.
func TestMoveGap(t *testing.T) {
	p := &participant{identity: "p"}
	for _, at := range []int64{100, 200, 300} {
		p.arrivals[0][kindAudio].record(at * int64(time.Millisecond))
		p.arrivals[0][kindVideo].record(at * int64(time.Millisecond))
	}
	p.arrivals[1][kindAudio].record(340 * int64(time.Millisecond))
	p.arrivals[1][kindAudio].record(360 * int64(time.Millisecond))
	p.arrivals[1][kindVideo].record(250 * int64(time.Millisecond)) // before the old session's last
	if d, ok := p.moveGap(kindAudio); !ok || d != 40*time.Millisecond {
		t.Errorf("moveGap(audio) = %v, %v; want 40ms, true", d, ok)
	}
	if d, ok := p.moveGap(kindVideo); !ok || d != 0 {
		t.Errorf("moveGap(video) = %v, %v; want 0 (overlap), true", d, ok)
	}
	var audio, video durations
	g := (&participant{identity: "q"}).gaps(&audio, &video)
	if g.Audio != nil || g.Video != nil || audio.count() != 0 {
		t.Errorf("gaps of a participant that received nothing = %+v; want none", g)
	}
	g = p.gaps(&audio, &video)
	if g.Audio == nil || *g.Audio != 40 || g.Video == nil || *g.Video != 0 || audio.gaps().Max != 40 {
		t.Errorf("gaps = %+v (audio %+v); want audio 40 ms, video 0 ms", g, audio.gaps())
	}
}
