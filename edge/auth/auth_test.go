package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testKeys = KeyPair{Key: "APIkey1", Secret: "0123456789abcdef0123456789abcdef"}
	t0       = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
)

func mint(t *testing.T, k KeyPair, tok Token, now time.Time) string {
	t.Helper()
	s, err := k.Mint(tok, now)
	if err != nil {
		t.Fatalf("Mint(%+v) error: %v", tok, err)
	}
	return s
}

// signRaw signs arbitrary claims, to build tokens Mint refuses to make.
func signRaw(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func TestMintVerifyRoundTrip(t *testing.T) {
	tok := Token{Room: "demo", Identity: "alice", Grants: Grants{Publish: true, Subscribe: true}, TTL: time.Hour}
	c, err := testKeys.Verify(mint(t, testKeys, tok, t0), t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("Verify(minted) error: %v", err)
	}
	if c.Identity() != "alice" || c.Room != "demo" || c.Grants != tok.Grants || c.Issuer != testKeys.Key {
		t.Errorf("Verify(minted) = %+v; want alice in demo with %+v issued by %s", c, tok.Grants, testKeys.Key)
	}
}

func TestVerifyRefusals(t *testing.T) {
	good := Token{Room: "demo", Identity: "alice", Grants: Grants{Subscribe: true}, TTL: time.Hour}
	other := KeyPair{Key: testKeys.Key, Secret: "ffffffffffffffffffffffffffffffff"}
	claims := func(iss, sub, room string, exp time.Time, g Grants) *Claims {
		return &Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: iss, Subject: sub, ExpiresAt: jwt.NewNumericDate(exp)}, Room: room, Grants: g}
	}
	tests := []struct {
		name  string
		token string
		want  *Error
	}{
		{"missing", "", ErrMissing},
		{"too long", strings.Repeat("a", MaxTokenLen+1), ErrTooLong},
		{"garbage", "not.a.jwt", ErrMalformed},
		{"bad signature", mint(t, other, good, t0), ErrSignature},
		{"unknown key", mint(t, KeyPair{Key: "other", Secret: testKeys.Secret}, good, t0), ErrUnknownKey},
		{"expired", mint(t, testKeys, Token{Room: "demo", Identity: "a", Grants: good.Grants, TTL: time.Second}, t0.Add(-time.Hour)), ErrExpired},
		{"not yet valid", mint(t, testKeys, good, t0.Add(time.Hour)), ErrNotYetValid},
		{"no expiry", signRaw(t, jwt.SigningMethodHS256, []byte(testKeys.Secret), &Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: testKeys.Key, Subject: "a"}, Room: "demo", Grants: good.Grants}), ErrMalformed},
		{"alg none", signRaw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(testKeys.Key, "a", "demo", t0.Add(time.Hour), good.Grants)), ErrSignature},
		{"hs512", signRaw(t, jwt.SigningMethodHS512, []byte(testKeys.Secret), claims(testKeys.Key, "a", "demo", t0.Add(time.Hour), good.Grants)), ErrSignature},
		{"empty identity", signRaw(t, jwt.SigningMethodHS256, []byte(testKeys.Secret), claims(testKeys.Key, "", "demo", t0.Add(time.Hour), good.Grants)), ErrBadIdentity},
		{"long identity", signRaw(t, jwt.SigningMethodHS256, []byte(testKeys.Secret), claims(testKeys.Key, strings.Repeat("x", MaxIdentityLen+1), "demo", t0.Add(time.Hour), good.Grants)), ErrBadIdentity},
		{"no room", signRaw(t, jwt.SigningMethodHS256, []byte(testKeys.Secret), claims(testKeys.Key, "a", "", t0.Add(time.Hour), good.Grants)), ErrBadRoom},
		{"bad room", signRaw(t, jwt.SigningMethodHS256, []byte(testKeys.Secret), claims(testKeys.Key, "a", "../etc", t0.Add(time.Hour), good.Grants)), ErrBadRoom},
		{"no grant", signRaw(t, jwt.SigningMethodHS256, []byte(testKeys.Secret), claims(testKeys.Key, "a", "demo", t0.Add(time.Hour), Grants{})), ErrNoGrant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := testKeys.Verify(tt.token, t0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify(%s) = %+v, %v; want error %v", tt.name, c, err, tt.want)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Forbidden != tt.want.Forbidden {
				t.Errorf("Verify(%s) error forbidden = %v; want %v", tt.name, ae != nil && ae.Forbidden, tt.want.Forbidden)
			}
		})
	}
}

func TestMintRefusesBadTokens(t *testing.T) {
	tests := []struct {
		name string
		keys KeyPair
		tok  Token
	}{
		{"no secret", KeyPair{Key: "k"}, Token{Room: "r", Identity: "i", Grants: Grants{Publish: true}, TTL: time.Hour}},
		{"zero ttl", testKeys, Token{Room: "r", Identity: "i", Grants: Grants{Publish: true}}},
		{"bad room", testKeys, Token{Room: "a b", Identity: "i", Grants: Grants{Publish: true}, TTL: time.Hour}},
		{"no identity", testKeys, Token{Room: "r", Grants: Grants{Publish: true}, TTL: time.Hour}},
		{"no grant", testKeys, Token{Room: "r", Identity: "i", TTL: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := tt.keys.Mint(tt.tok, t0); err == nil {
				t.Errorf("Mint(%+v) = %q, nil; want an error", tt.tok, s)
			}
		})
	}
}

func TestValidRoom(t *testing.T) {
	tests := []struct {
		room string
		want bool
	}{
		{"demo", true}, {"A-b_c.9", true}, {strings.Repeat("r", MaxRoomLen), true},
		{"", false}, {strings.Repeat("r", MaxRoomLen+1), false}, {"a/b", false}, {"café", false}, {"a b", false},
	}
	for _, tt := range tests {
		if got := ValidRoom(tt.room); got != tt.want {
			t.Errorf("ValidRoom(%q) = %v; want %v", tt.room, got, tt.want)
		}
	}
}
