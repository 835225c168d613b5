package auth

import (
	"errors"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary text to the token parser: it must never panic,
// and whatever it accepts must satisfy every invariant the edge relies on.
func FuzzVerify(f *testing.F) {
	good, err := testKeys.Mint(Token{Room: "demo", Identity: "alice", Grants: Grants{Publish: true}, TTL: time.Hour}, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := testKeys.Verify(token, t0)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("Verify(%q) error %v is not an *auth.Error", token, err)
			}
			return
		}
		if !ValidRoom(c.Room) || c.Subject == "" || len(c.Subject) > MaxIdentityLen || c.Issuer != testKeys.Key {
			t.Fatalf("Verify(%q) accepted bad claims %+v", token, c)
		}
		if c.ExpiresAt == nil || !c.ExpiresAt.After(t0.Add(-Leeway)) {
			t.Fatalf("Verify(%q) accepted a token without a future expiry: %+v", token, c.ExpiresAt)
		}
	})
}
