package turn

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseUsername checks that any username parses without panicking and
// that a parsed one is "expiry:identity" with a non-empty identity.
func FuzzParseUsername(f *testing.F) {
	f.Add("1764120000:alice")
	f.Add("1764120000:a:b")
	f.Add(":")
	f.Add("-1:x")
	f.Fuzz(func(t *testing.T, u string) {
		expiry, identity, ok := parseUsername(u)
		if !ok {
			return
		}
		ts, rest, _ := strings.Cut(u, ":")
		if identity == "" || rest != identity || expiry.Unix() <= 0 {
			t.Errorf("parseUsername(%q) = %v, %q; want a positive expiry and the identity after the first colon", u, expiry, identity)
		}
		if n, err := strconv.ParseInt(ts, 10, 64); err != nil || n != expiry.Unix() {
			t.Errorf("parseUsername(%q) expiry = %d; want %s", u, expiry.Unix(), ts)
		}
	})
}
