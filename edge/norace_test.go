//go:build !race

package edge

import "time"

// lateJoinVideoBound: a late joiner's video must start within a second.
const lateJoinVideoBound = time.Second
