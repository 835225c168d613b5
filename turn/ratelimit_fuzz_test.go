package turn

import (
	"encoding/binary"
	"testing"

	"github.com/pion/stun/v3"
)

// FuzzIsSTUNRequest checks the header test against Pion's decoding of the
// message type.
func FuzzIsSTUNRequest(f *testing.F) {
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw)
	f.Add([]byte{0x40, 0, 0, 4, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		want := false
		if stun.IsMessage(b) && b[0]&0xc0 == 0 {
			var mt stun.MessageType
			mt.ReadValue(binary.BigEndian.Uint16(b[0:2]))
			want = mt.Class == stun.ClassRequest
		}
		if got := isSTUNRequest(b); got != want {
			t.Errorf("isSTUNRequest(% x) = %v; want %v", b, got, want)
		}
	})
}
