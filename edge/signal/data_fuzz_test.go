package signal

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzParseDataFrame feeds arbitrary bytes to the data frame parser: it
// must never panic, and whatever it accepts must encode back to the same
// bytes.
func FuzzParseDataFrame(f *testing.F) {
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 4, 'c', 'h', 'a', 't', 1, 3, 'b', 'o', 'b', 'h', 'i'})
	f.Add([]byte{1, 0, 2, 1, 'a', 0})
	f.Add([]byte{2, 0, 0, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseDataFrame(b)
		if err != nil {
			return
		}
		out, err := AppendDataFrame(nil, fr)
		if err != nil {
			t.Fatalf("AppendDataFrame(ParseDataFrame(%q)) error %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("AppendDataFrame(ParseDataFrame(%q)) = %q; want the input", b, out)
		}
	})
}

func TestDataFrameRoundTrip(t *testing.T) {
	tests := []DataFrame{
		{Payload: []byte("hello")},
		{Topic: "chat", Identities: []string{"bob", "carol"}, Payload: []byte{0, 1, 2}},
		{Identities: []string{"alice"}},
	}
	for _, want := range tests {
		t.Run(want.Topic+string(want.Payload), func(t *testing.T) {
			b, err := AppendDataFrame(nil, want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseDataFrame(b)
			if err != nil {
				t.Fatalf("ParseDataFrame(%q) error %v", b, err)
			}
			if got.Topic != want.Topic || !slices.Equal(got.Identities, want.Identities) || !bytes.Equal(got.Payload, want.Payload) {
				t.Fatalf("ParseDataFrame(AppendDataFrame(%+v)) = %+v", want, got)
			}
		})
	}
	for _, bad := range [][]byte{nil, {1}, {1, 5, 'a'}, {1, 0, 1, 0}, {1, 1, 0xff, 0}, {9, 0, 0}} {
		if _, err := ParseDataFrame(bad); err == nil {
			t.Errorf("ParseDataFrame(%q) = nil error; want one", bad)
		}
	}
}
