package netlab

import (
	"fmt"
	"time"
)

// AudioKeptPace checks that a subscriber behind a constrained link kept
// its audio while a reference subscriber on a free path got the same
// track: over the same window it received at least 90 % of the
// reference's packets, and its longest silence between two packets is
// at most the reference's longest (a loaded host's own hiccup shows in
// both) plus slack: what the constrained link may add, its queue and a
// packet or two it drops.
//
// Counts per second are deliberately not compared: a bottleneck queue
// that fills and drains moves packets across a second's boundary and
// would fail a second in which nothing was lost.
func AudioKeptPace(got, want int64, gap, wantGap, slack time.Duration) error {
	if got < want*9/10 {
		return fmt.Errorf("audio: %d packets against the free path's %d; want at least 90 %%", got, want)
	}
	if gap > wantGap+slack {
		return fmt.Errorf("audio stopped for %s ; the free path's longest silence: %s, allowed on top: %s",
			gap.Round(time.Millisecond), wantGap.Round(time.Millisecond), slack)
	}
	return nil
}
