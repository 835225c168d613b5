package fleet

import "testing"

// Whatever a room key holds, decoding and encoding it again gives the
// same bytes: the compare-and-write scripts compare what Lookup read with
// what is there, so an entry that did not survive the round trip could
// never be replaced.
func FuzzClaimRoundTrip(f *testing.F) {
	f.Add(newClaim(Instance{ID: "a", URL: "http://a.test"}).encode())
	f.Add(`{"owner":"a","url":"http://a.test","token":"t"}`)
	f.Add(`{"token":"t","url":"http://a.test","owner":"a"}`)
	f.Add(`{"owner":"a","url":"u","token":"t","extra":1}`)
	f.Add(`{"owner":"\u0061","url":"","token":""}`)
	f.Add("not json")
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return // the store never holds an empty entry: "" is "none"
		}
		if got := decodeClaim(s).encode(); got != s {
			t.Errorf("decodeClaim(%q).encode() = %q", s, got)
		}
	})
}
