package verifier

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

func TestVerifier_Verify(t *testing.T) {
	f := newFixture(t)
	v := f.sc.Verifier()
	now := time.Now()

	with := func(mut func(c map[string]any)) map[string]any {
		c := baseClaims(now)
		mut(c)
		return c
	}
	without := func(name string) map[string]any {
		return with(func(c map[string]any) { delete(c, name) })
	}
	hdr := func(mut func(h map[string]any)) map[string]any {
		h := f.EdHeader()
		mut(h)
		return h
	}
	edWith := func(h map[string]any) string {
		return signJWT(t, jwt.SigningMethodEdDSA, f.Ed, h, baseClaims(now))
	}
	unsigned := func(alg string) string {
		h := f.EdHeader()
		h["alg"] = alg
		return encodeJWT(t, h, baseClaims(now)) + "."
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	valid := f.EdToken(t, baseClaims(now))
	parts := strings.Split(valid, ".")
	forged := with(func(c map[string]any) { c["sub"] = "admin" })
	tampered := parts[0] + "." + b64(mustJSON(t, forged)) + "." + parts[2]

	tests := []struct {
		name  string
		token string
		want  *Error
	}{
		{"valid EdDSA", valid, nil},
		{"valid ES256", f.EsToken(t, baseClaims(now)), nil},
		{"typ application/at+jwt", edWith(hdr(func(h map[string]any) { h["typ"] = "application/at+jwt" })), nil},
		{"typ case-insensitive", edWith(hdr(func(h map[string]any) { h["typ"] = "AT+JWT" })), nil},
		{"aud array", f.EdToken(t, with(func(c map[string]any) { c["aud"] = []string{"other", testAudience} })), nil},

		{"empty", "", ErrMissing},
		{"oversized", f.EdToken(t, with(func(c map[string]any) { c["pad"] = strings.Repeat("a", DefaultMaxTokenSize) })), ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", valid + ".x", ErrMalformed},
		{"garbage", "not a token", ErrMalformed},
		{"non-base64 header", "!!!." + parts[1] + "." + parts[2], ErrMalformed},
		{"header not an object", b64([]byte(`["EdDSA"]`)) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"padded signature", valid + "=", ErrMalformed},

		{"alg none", unsigned("none"), ErrAlgorithm},
		{"alg None", unsigned("None"), ErrAlgorithm},
		{"alg NONE", unsigned("NONE"), ErrAlgorithm},
		{"alg missing", edWith(hdr(func(h map[string]any) { delete(h, "alg") })), ErrAlgorithm},
		{"HS256 with public key as secret", signJWT(t, jwt.SigningMethodHS256, []byte(f.Ed.Public().(ed25519.PublicKey)),
			hdr(func(h map[string]any) { h["alg"] = "HS256" }), baseClaims(now)), ErrAlgorithm},
		{"HS256 with JWK as secret", signJWT(t, jwt.SigningMethodHS256, f.EdJWK,
			hdr(func(h map[string]any) { h["alg"] = "HS256" }), baseClaims(now)), ErrAlgorithm},
		{"RS256 header", edWith(hdr(func(h map[string]any) { h["alg"] = "RS256" })), ErrAlgorithm},
		{"EdDSA header with ES256 kid", signJWT(t, jwt.SigningMethodEdDSA, f.Ed,
			hdr(func(h map[string]any) { h["kid"] = f.EsKid }), baseClaims(now)), ErrAlgorithm},
		{"ES256 header with EdDSA kid", signJWT(t, jwt.SigningMethodES256, f.Es,
			map[string]any{"typ": "at+jwt", "alg": bus.AlgES256, "kid": f.EdKid}, baseClaims(now)), ErrAlgorithm},

		{"typ JWT", edWith(hdr(func(h map[string]any) { h["typ"] = "JWT" })), ErrType},
		{"typ missing", edWith(hdr(func(h map[string]any) { delete(h, "typ") })), ErrType},

		{"crit", edWith(hdr(func(h map[string]any) { h["crit"] = []string{"x"} })), ErrMalformed},
		{"jku", edWith(hdr(func(h map[string]any) { h["jku"] = "https://evil.test/jwks.json" })), ErrMalformed},
		{"x5u", edWith(hdr(func(h map[string]any) { h["x5u"] = "https://evil.test/cert.pem" })), ErrMalformed},
		{"x5c", edWith(hdr(func(h map[string]any) { h["x5c"] = []string{"MIIB"} })), ErrMalformed},
		{"jwk", edWith(hdr(func(h map[string]any) { h["jwk"] = json.RawMessage(f.EdJWK) })), ErrMalformed},

		{"unknown kid", edWith(hdr(func(h map[string]any) { h["kid"] = "no-such-key" })), ErrUnknownKey},
		{"missing kid", edWith(hdr(func(h map[string]any) { delete(h, "kid") })), ErrUnknownKey},

		{"other key, published kid", signJWT(t, jwt.SigningMethodEdDSA, otherKey, f.EdHeader(), baseClaims(now)), ErrBadSignature},
		{"tampered payload", tampered, ErrBadSignature},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(f.EdToken(t, baseClaims(now)), ".")[2], ErrBadSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", ErrBadSignature},

		{"expired", f.EdToken(t, with(func(c map[string]any) {
			c["iat"] = NewNumericDate(now.Add(-2 * time.Hour))
			c["exp"] = now.Add(-time.Hour).Unix()
		})), ErrExpired},
		{"nbf in the future", f.EdToken(t, with(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })), ErrNotYetValid},
		{"iat in the future", f.EdToken(t, with(func(c map[string]any) {
			c["iat"] = NewNumericDate(now.Add(time.Hour))
			c["exp"] = now.Add(2 * time.Hour).Unix()
		})), ErrNotYetValid},
		{"wrong iss", f.EdToken(t, with(func(c map[string]any) { c["iss"] = "https://evil.test" })), ErrIssuer},
		{"missing iss", f.EdToken(t, without("iss")), ErrMalformed},
		{"wrong aud", f.EdToken(t, with(func(c map[string]any) { c["aud"] = "other" })), ErrAudience},
		{"missing aud", f.EdToken(t, without("aud")), ErrMalformed},

		{"missing exp", f.EdToken(t, without("exp")), ErrMalformed},
		{"missing sub", f.EdToken(t, without("sub")), ErrMalformed},
		{"missing jti", f.EdToken(t, without("jti")), ErrMalformed},
		{"missing iat", f.EdToken(t, without("iat")), ErrMalformed},
		{"exp as string", f.EdToken(t, with(func(c map[string]any) { c["exp"] = "9999999999" })), ErrMalformed},
		{"exp 1e300", f.EdToken(t, with(func(c map[string]any) { c["exp"] = json.RawMessage("1e300") })), ErrMalformed},
		{"exp negative", f.EdToken(t, with(func(c map[string]any) { c["exp"] = -1 })), ErrMalformed},
		{"iat with ten fraction digits", f.EdToken(t, with(func(c map[string]any) { c["iat"] = json.RawMessage("1795430832.1234567891") })), ErrMalformed},
		{"claims not an object", signJWT(t, jwt.SigningMethodEdDSA, f.Ed, f.EdHeader(), nil), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), tt.token)
			checkVerdict(t, err, tt.want)
			if err != nil && c != nil {
				t.Fatalf("Verify returned claims %+v with error %v", c, err)
			}
		})
	}

	t.Run("claims", func(t *testing.T) {
		iat := time.UnixMilli(now.UnixMilli())
		want := baseClaims(iat)
		want["aud"] = []string{testAudience}
		c, err := v.Verify(t.Context(), f.EdToken(t, want))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]any{
			"iss": c.Issuer, "sub": c.Subject, "jti": c.ID, "client_id": c.ClientID,
			"sid": c.SessionID, "scope": c.Scope, "tenant": c.Tenant,
		}
		for k, g := range got {
			if g != want[k] {
				t.Errorf("%s = %q, want %q", k, g, want[k])
			}
		}
		if got, want := strings.Join(c.Audience, ","), testAudience; got != want {
			t.Errorf("aud = %q, want %q", got, want)
		}
		if c.IssuedAt == nil || !c.IssuedAt.Equal(iat) {
			t.Errorf("iat = %v, want %v (milliseconds kept)", c.IssuedAt, iat)
		}
		if c.ExpiresAt == nil || c.ExpiresAt.Unix() != want["exp"].(int64) {
			t.Errorf("exp = %v, want %v", c.ExpiresAt, want["exp"])
		}
	})
}

// TestVerifier_Leeway checks that exp, nbf and iat tolerate DefaultLeeway
// of clock skew and no more.
func TestVerifier_Leeway(t *testing.T) {
	k := newTestKeys(t)
	keys := NewKeySet(nil, nil)
	if err := putKey(t, keys, k.EdJWK); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1795430832, 0)
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, Now: func() time.Time { return now }}, keys, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mut  func(c map[string]any)
		want *Error
	}{
		{"expired within leeway", func(c map[string]any) { c["exp"] = now.Add(-DefaultLeeway + time.Second).Unix() }, nil},
		{"expired beyond leeway", func(c map[string]any) { c["exp"] = now.Add(-DefaultLeeway - time.Second).Unix() }, ErrExpired},
		{"nbf within leeway", func(c map[string]any) { c["nbf"] = now.Add(DefaultLeeway - time.Second).Unix() }, nil},
		{"nbf beyond leeway", func(c map[string]any) { c["nbf"] = now.Add(DefaultLeeway + time.Second).Unix() }, ErrNotYetValid},
		{"iat within leeway", func(c map[string]any) { c["iat"] = NewNumericDate(now.Add(DefaultLeeway - time.Second)) }, nil},
		{"iat beyond leeway", func(c map[string]any) { c["iat"] = NewNumericDate(now.Add(DefaultLeeway + time.Second)) }, ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseClaims(now.Add(-time.Minute))
			tt.mut(c)
			_, err := v.Verify(t.Context(), k.EdToken(t, c))
			checkVerdict(t, err, tt.want)
		})
	}
}

func TestVerifier_NotReady(t *testing.T) {
	k := newTestKeys(t)
	keys := NewKeySet(nil, nil)
	if err := putKey(t, keys, k.EdJWK); err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience}, keys, nil, func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(t.Context(), k.EdToken(t, baseClaims(time.Now())))
	checkVerdict(t, err, ErrNotReady)
}

func TestConfig_Validate(t *testing.T) {
	cfg := Config{Algorithms: []string{"HS256", "none"}, Leeway: time.Hour, MaxTokenSize: -1}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate = nil, want errors")
	}
	for _, want := range []string{"issuer", "audience", `"HS256"`, `"none"`, "leeway", "max token size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %q, does not mention %s", err, want)
		}
	}
	if _, err := New(Config{Issuer: testIssuer}, NewKeySet(nil, nil), nil, nil); err == nil {
		t.Error("New without audience succeeded")
	}
}

// TestVerifier_LifetimeBoundedByKeyEntry: a token whose exp - iat exceeds
// the max lifetime its key's signed entry states (plus leeway) is refused,
// whichever key signed it; an entry without the field bounds it to
// bus.DefaultMaxTokenLifetime.
func TestVerifier_LifetimeBoundedByKeyEntry(t *testing.T) {
	k := newTestKeys(t)
	keys := NewKeySet(nil, nil)
	if err := putKey(t, keys, k.EdJWK); err != nil { // an entry without max_ttl
		t.Fatal(err)
	}
	now := time.Now()
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, Now: func() time.Time { return now }}, keys, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	token := func(life time.Duration) string {
		c := baseClaims(now)
		c["exp"] = now.Add(life).Unix()
		return k.EdToken(t, c)
	}
	for _, tt := range []struct {
		name string
		life time.Duration
		want *Error
	}{
		{"a year", 365 * 24 * time.Hour, ErrMalformed},
		{"default max plus leeway and a second", bus.DefaultMaxTokenLifetime + DefaultLeeway + time.Second, ErrMalformed},
		{"the default max", bus.DefaultMaxTokenLifetime, nil},
	} {
		t.Run("unstated/"+tt.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), token(tt.life))
			checkVerdict(t, err, tt.want)
		})
	}
	// The issuer states its own bound in the signed entry.
	signer := bustest.Signer(t)
	signer.SetMaxTokenLifetime(time.Hour)
	jwk := mustJWK(t, k.EdJWK)
	entry, err := signer.SignKey(jwk)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Put(jwk.Kid, entry); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		life time.Duration
		want *Error
	}{
		{"a year", 365 * 24 * time.Hour, ErrMalformed},
		{"an hour and leeway and a second", time.Hour + DefaultLeeway + time.Second, ErrMalformed},
		{"an hour", time.Hour, nil},
	} {
		t.Run("stated/"+tt.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), token(tt.life))
			checkVerdict(t, err, tt.want)
		})
	}
}
