package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestPublishDataGrant: publish_data absent (a token minted before the
// grant existed) allows, true allows, false denies, and anything else
// makes the token invalid.
func TestPublishDataGrant(t *testing.T) {
	tests := []struct {
		name    string
		grant   any // the claim's value; nil leaves it out
		want    bool
		wantErr bool
	}{
		{"absent", nil, true, false},
		{"true", true, true, false},
		{"false", false, false, false},
		{"a string", "no", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			grants := map[string]any{"publish": true, "subscribe": true}
			if tt.grant != nil {
				grants["publish_data"] = tt.grant
			}
			claims := jwt.MapClaims{"iss": testKeys.Key, "sub": "alice", "room": "demo",
				"exp": t0.Add(time.Hour).Unix(), "grants": grants}
			c, err := testKeys.Verify(signRaw(t, jwt.SigningMethodHS256, []byte(testKeys.Secret), claims), t0)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Verify(publish_data %v) error = %v; want error %v", tt.grant, err, tt.wantErr)
			}
			if err == nil && c.Grants.CanPublishData() != tt.want {
				t.Errorf("CanPublishData() with publish_data %v = %v; want %v", tt.grant, !tt.want, tt.want)
			}
		})
	}
}

// TestPublishDataRoundTrip: Mint writes the grant Verify reads back, and
// leaves it out when absent.
func TestPublishDataRoundTrip(t *testing.T) {
	for _, p := range []Permission{PermissionAbsent, PermissionDenied, PermissionGranted} {
		tok := Token{Room: "demo", Identity: "alice", Grants: Grants{Subscribe: true, PublishData: p}, TTL: time.Hour}
		c, err := testKeys.Verify(mint(t, testKeys, tok, t0), t0)
		if err != nil {
			t.Fatalf("Verify(minted with %d) error: %v", p, err)
		}
		if c.Grants != tok.Grants {
			t.Errorf("Verify(minted).Grants = %+v; want %+v", c.Grants, tok.Grants)
		}
	}
}
