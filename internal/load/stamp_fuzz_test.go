package load

import (
	"testing"
)

// FuzzReadStamp: any received payload either carries a stamp that
// round-trips or is rejected, and never panics.
func FuzzReadStamp(f *testing.F) {
	p := make([]byte, 40)
	putStamp(p, stamp{stream: 3, seq: 9, sent: 12345})
	f.Add(p)
	f.Add([]byte{})
	f.Add([]byte("mld1mld1mld1mld1mld1"))
	f.Fuzz(func(t *testing.T, p []byte) {
		s, ok := readStamp(p)
		if !ok {
			return
		}
		q := make([]byte, stampSize)
		putStamp(q, s)
		if got, _ := readStamp(q); got != s {
			t.Errorf("readStamp(putStamp(%+v)) = %+v; want it back", s, got)
		}
	})
}
