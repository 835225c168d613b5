package turn

import "testing"

// FuzzParseChannelData checks that no input makes the parser read beyond
// the datagram, and that what it accepts is written back the same.
func FuzzParseChannelData(f *testing.F) {
	f.Add([]byte{0x40, 0x01, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0x40, 0x01, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		number, data, ok := parseChannelData(b)
		if !ok {
			return
		}
		out := make([]byte, channelDataLen(len(data)))
		out = out[:putChannelData(out, number, data)]
		if n2, d2, ok := parseChannelData(out); !ok || n2 != number || string(d2) != string(data) {
			t.Errorf("round trip of %x = %#x, %q, %v; want %#x, %q", b, n2, d2, ok, number, data)
		}
	})
}
