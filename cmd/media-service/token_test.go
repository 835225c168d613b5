package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/media-service/media-service/edge/auth"
)

func TestTokenCommand(t *testing.T) {
	keys := auth.KeyPair{Key: "prod-key", Secret: "prod-secret-0123456789abcdef0123456789"}
	tests := []struct {
		name        string
		key, secret string
		args        []string
		verifyWith  auth.KeyPair
		wantGrants  auth.Grants
	}{
		{"dev pair", "", "", []string{"-room", "demo", "-identity", "alice"}, auth.DevKeyPair(),
			auth.Grants{Publish: true, Subscribe: true, PublishData: auth.PermissionGranted}},
		{"configured pair", keys.Key, keys.Secret, []string{"-room", "demo", "-identity", "alice", "-publish=false"}, keys,
			auth.Grants{Subscribe: true, PublishData: auth.PermissionGranted}},
		{"no data", "", "", []string{"-room", "demo", "-identity", "alice", "-publish-data=false"}, auth.DevKeyPair(),
			auth.Grants{Publish: true, Subscribe: true, PublishData: auth.PermissionDenied}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("MEDIA_API_KEY", tt.key)
			t.Setenv("MEDIA_API_SECRET", tt.secret)
			var out, errOut bytes.Buffer
			if err := run(context.Background(), append([]string{"token"}, tt.args...), &out, &errOut); err != nil {
				t.Fatalf("token %v: %v (%s)", tt.args, err, errOut.String())
			}
			c, err := tt.verifyWith.Verify(strings.TrimSpace(out.String()), time.Now())
			if err != nil {
				t.Fatalf("Verify(printed token) = %v", err)
			}
			if c.Identity() != "alice" || c.Room != "demo" || c.Grants != tt.wantGrants {
				t.Errorf("token claims = %s in %s with %+v; want alice in demo with %+v", c.Identity(), c.Room, c.Grants, tt.wantGrants)
			}
			if ttl := time.Until(c.ExpiresAt.Time); ttl < 59*time.Minute || ttl > time.Hour {
				t.Errorf("token expires in %s; want the default 1h", ttl)
			}
		})
	}
}

// TestTokenCommandAdmin: -admin mints a server API token that VerifyAdmin
// accepts with room_admin, or room_list only with -list-only.
func TestTokenCommandAdmin(t *testing.T) {
	keys := auth.KeyPair{Key: "prod-key", Secret: "prod-secret-0123456789abcdef0123456789"}
	t.Setenv("MEDIA_API_KEY", keys.Key)
	t.Setenv("MEDIA_API_SECRET", keys.Secret)
	for _, tc := range []struct {
		args []string
		want auth.AdminGrants
	}{
		{[]string{"-admin", "-identity", "backend"}, auth.AdminGrants{RoomAdmin: true}},
		{[]string{"-admin", "-list-only"}, auth.AdminGrants{RoomList: true}},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), append([]string{"token"}, tc.args...), &out, &errOut); err != nil {
			t.Fatalf("token %v: %v (%s)", tc.args, err, errOut.String())
		}
		c, err := keys.VerifyAdmin(strings.TrimSpace(out.String()), time.Now())
		if err != nil || c.Admin != tc.want {
			t.Errorf("token %v: VerifyAdmin = %+v, %v; want grants %+v", tc.args, c, err, tc.want)
		}
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"token", "-list-only", "-room", "r", "-identity", "i"}, &out, &errOut); err == nil {
		t.Errorf("token -list-only without -admin = nil error; want a usage error")
	}
}

func TestTokenCommandRefusals(t *testing.T) {
	t.Setenv("MEDIA_API_SECRET", "")
	tests := [][]string{
		{"-room", "demo"},
		{"-identity", "alice"},
		{"-room", "no spaces", "-identity", "alice"},
		{"-room", "demo", "-identity", "alice", "-ttl", "-1h"},
		{"-room", "demo", "-identity", "alice", "-publish=false", "-subscribe=false"},
		{"-bogus"},
	}
	for _, args := range tests {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), append([]string{"token"}, args...), &out, &errOut); err == nil {
			t.Errorf("token %v = nil error, printed %q; want an error", args, out.String())
		}
	}
}
