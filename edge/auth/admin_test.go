package auth

import (
	"errors"
	"testing"
	"time"
)

// TestAdminTokens: an admin token passes VerifyAdmin and is refused as a
// participant token (403); a participant token is refused by VerifyAdmin
// (403); another secret's admin token is refused as unauthenticated.
func TestAdminTokens(t *testing.T) {
	now := time.Now()
	k := KeyPair{Key: "key", Secret: "s3cret-s3cret-s3cret-s3cret-s3cret"}
	forger := KeyPair{Key: "key", Secret: "another-secret-another-secret-xx"}
	admin, err := k.MintAdmin(AdminToken{Name: "backend", Grants: AdminGrants{RoomAdmin: true}, TTL: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := forger.MintAdmin(AdminToken{Grants: AdminGrants{RoomAdmin: true}, TTL: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	participant, err := k.Mint(Token{Room: "r", Identity: "ann", Grants: Grants{Publish: true}, TTL: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.VerifyAdmin(admin, now)
	if err != nil || !c.Admin.RoomAdmin || c.Admin.RoomList || c.Subject != "backend" {
		t.Errorf("VerifyAdmin(admin) = %+v, %v; want room_admin only, subject backend", c, err)
	}
	for _, tc := range []struct {
		name      string
		verify    func() error
		want      *Error
		forbidden bool
	}{
		{"participant token on the API", func() error { _, err := k.VerifyAdmin(participant, now); return err }, ErrNoAdminGrant, true},
		{"forged admin token", func() error { _, err := k.VerifyAdmin(forged, now); return err }, ErrSignature, false},
		{"admin token at a join", func() error { _, err := k.Verify(admin, now); return err }, ErrBadRoom, true},
		{"expired admin token", func() error { _, err := k.VerifyAdmin(admin, now.Add(time.Hour)); return err }, ErrExpired, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.verify()
			var ae *Error
			if !errors.Is(err, tc.want) || !errors.As(err, &ae) || ae.Forbidden != tc.forbidden {
				t.Errorf("err = %v; want %v (forbidden %v)", err, tc.want, tc.forbidden)
			}
		})
	}
	if _, err := k.MintAdmin(AdminToken{TTL: time.Minute}, now); !errors.Is(err, ErrNoAdminGrant) {
		t.Errorf("MintAdmin(no grants) = %v; want %v", err, ErrNoAdminGrant)
	}
}
