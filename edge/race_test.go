//go:build race

package edge

import "time"

// lateJoinVideoBound is looser under the race detector, which slows the
// DTLS handshake's cryptography several times over (a late joiner's first
// video takes about 30 ms without it on loopback, over 1 s with it on a
// loaded 2-core machine, up to 4 s when other jobs share it).
const lateJoinVideoBound = 5 * time.Second
