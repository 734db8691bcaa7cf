package bus

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestJWK_RSAThumbprint: the RSA thumbprint is RFC 7638's own example
// (section 3.1).
func TestJWK_RSAThumbprint(t *testing.T) {
	k := JWK{Kty: "RSA", E: "AQAB", N: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
	if got, want := k.Thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("thumbprint = %s, want %s", got, want)
	}
}

func rsaJWK(t *testing.T, bits int, kid, alg string) JWK {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewJWK(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	k.Kid, k.Alg = kid, alg
	return k
}

// TestExternalPublicKey_RSA: RSA keys of 2048 to 4096 bits with RS256 or
// PS256 pass; shorter ones, other algorithms, and RSA for Herald's own
// keys are refused.
func TestExternalPublicKey_RSA(t *testing.T) {
	good := rsaJWK(t, 2048, "idp-1", AlgRS256)
	if _, err := good.ExternalPublicKey(); err != nil {
		t.Fatalf("2048-bit RS256: %v", err)
	}
	ps := good
	ps.Alg = AlgPS256
	if _, err := ps.ExternalPublicKey(); err != nil {
		t.Fatalf("2048-bit PS256: %v", err)
	}
	for name, k := range map[string]JWK{
		"1024 bits": rsaJWK(t, 1024, "short", AlgRS256),
		"ES256 alg": func() JWK { k := good; k.Alg = AlgES256; return k }(),
		"HS256 alg": func() JWK { k := good; k.Alg = "HS256"; return k }(),
		"no kid":    func() JWK { k := good; k.Kid = ""; return k }(),
		"even e":    func() JWK { k := good; k.E = "AQAA"; return k }(),
		"padded n":  func() JWK { k := good; k.N = "AA" + k.N; return k }(),
	} {
		if _, err := k.ExternalPublicKey(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	own := good
	own.Kid = own.Thumbprint()
	if _, err := own.PublicKey(); err == nil {
		t.Error("an RSA key passed as one of Herald's own")
	}
}

// TestExternalKeyEntry: an external key's entry opens only under its
// ExternalKeyName and names its issuer; moved under another issuer's
// name, or Herald's kind of name, it is refused as misplaced.
func TestExternalKeyEntry(t *testing.T) {
	s := newRootTestSigner(t)
	keys := func(kid string) (JWK, crypto.PublicKey, bool) {
		if kid != s.KeyID() {
			return JWK{}, nil, false
		}
		return s.JWK(), s.priv.Public(), true
	}
	k := rsaJWK(t, 2048, "kid-1", AlgRS256)
	const iss = "https://idp.example"
	name, value, err := s.SignExternalKey(iss, k, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, ExternalKeyPrefix) || name != ExternalKeyName(iss, k) {
		t.Fatalf("name = %s", name)
	}
	e, err := OpenKeyEntry(name, value, keys)
	if err != nil {
		t.Fatal(err)
	}
	if e.Issuer != iss || e.JWK.Kid != "kid-1" || e.MaxLifetime != time.Hour {
		t.Errorf("entry = %+v", e)
	}
	for _, other := range []string{ExternalKeyName("https://other.example", k), "kid-1", k.Thumbprint()} {
		if _, err := OpenKeyEntry(other, value, keys); !errors.Is(err, ErrMisplaced) {
			t.Errorf("stored as %s: err = %v, want ErrMisplaced", other, err)
		}
	}
	if _, _, err := s.SignExternalKey(iss, rsaJWK(t, 1024, "k", AlgRS256), time.Hour); err == nil {
		t.Error("signed a 1024-bit key")
	}
	if _, _, err := s.SignExternalKey("bad issuer", k, time.Hour); err == nil {
		t.Error("signed for an issuer with a space")
	}
}

// TestTrustEntry: a trust entry round-trips, is bound to its name, and
// invalid ones are refused at signing.
func TestTrustEntry(t *testing.T) {
	s := newRootTestSigner(t)
	keys := func(kid string) (JWK, crypto.PublicKey, bool) {
		if kid != s.KeyID() {
			return JWK{}, nil, false
		}
		return s.JWK(), s.priv.Public(), true
	}
	tr := Trust{Issuer: "https://idp.example", Algorithms: []string{AlgRS256}, MaxTTL: 3600,
		Claims: TrustClaims{Tenant: "tid"}}
	name, value, err := s.SignTrust(tr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenTrust(name, value, keys)
	if err != nil {
		t.Fatal(err)
	}
	if got.Issuer != tr.Issuer || got.Claims.SessionClaim() != "sid" || len(got.Claims.ClientClaims()) != 2 || got.Claims.Tenant != "tid" {
		t.Errorf("trust = %+v", got)
	}
	if _, err := OpenTrust(TrustName("https://other.example"), value, keys); !errors.Is(err, ErrMisplaced) {
		t.Errorf("moved: err = %v, want ErrMisplaced", err)
	}
	if _, err := OpenTrust(name, value, func(string) (JWK, crypto.PublicKey, bool) { return JWK{}, nil, false }); !errors.Is(err, ErrUntrusted) {
		t.Errorf("untrusted signer: err = %v", err)
	}
	for _, bad := range []Trust{
		{Issuer: "https://idp.example", Algorithms: []string{"HS256"}, MaxTTL: 60},
		{Issuer: "https://idp.example", Algorithms: []string{AlgRS256}, MaxTTL: 0},
		{Issuer: "https://idp.example", Algorithms: []string{AlgRS256}, MaxTTL: 2 * 86400},
		{Issuer: "", Algorithms: []string{AlgRS256}, MaxTTL: 60},
	} {
		if _, _, err := s.SignTrust(bad); err == nil {
			t.Errorf("signed %+v", bad)
		}
	}
}

// TestRevocation_Issuer: a revocation may name the issuer it is limited
// to; a malformed one is refused.
func TestRevocation_Issuer(t *testing.T) {
	now := time.Now()
	r := Revocation{Kind: KindSession, Value: "s1", At: now, Until: now.Add(time.Minute), Issuer: "https://idp.example"}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	r.Issuer = "https://idp.example/\x00"
	if err := r.Validate(); err == nil {
		t.Error("accepted an issuer with a NUL")
	}
}
