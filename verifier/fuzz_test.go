package verifier

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

var update = flag.Bool("update", false, "rewrite the seed corpora in testdata/fuzz")

// fuzzNow is the clock of FuzzVerify, fixed so that the committed corpus's
// valid tokens stay valid.
var fuzzNow = time.Unix(1795430832, 0)

// fuzzKeys returns fixed signing keys, derived from constant seeds, so that
// the committed corpus holds tokens they signed. Test keys only.
func fuzzKeys(tb testing.TB) *testKeys {
	tb.Helper()
	seed := sha256.Sum256([]byte("herald FuzzVerify Ed25519"))
	ed := ed25519.NewKeyFromSeed(seed[:])
	d := sha256.Sum256([]byte("herald FuzzVerify P-256"))
	es, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		tb.Fatal(err)
	}
	k := &testKeys{Ed: ed, Es: es}
	k.EdKid, k.EdJWK = jwkOf(tb, ed.Public())
	k.EsKid, k.EsJWK = jwkOf(tb, &es.PublicKey)
	return k
}

// FuzzVerify feeds arbitrary tokens to Verify. None may panic, every
// refusal carries a reason, and a token that is accepted must have been
// signed by one of the trusted keys (checked here with crypto/ed25519 and
// crypto/ecdsa directly, not through golang-jwt) and must read the same to
// a plain JSON decoder as to the verifier: no member is duplicated,
// case-folded or mangled into U+FFFD on the way.
func FuzzVerify(f *testing.F) {
	k := fuzzKeys(f)
	keys := NewKeySet(nil, nil)
	for _, jwk := range map[string][]byte{k.EdKid: k.EdJWK, k.EsKid: k.EsJWK} {
		if err := putKey(f, keys, jwk); err != nil {
			f.Fatal(err)
		}
	}
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, CacheSize: -1,
		Now: func() time.Time { return fuzzNow }}, keys, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	// The attack suite is the committed corpus (TestFuzzCorpora).
	f.Add(k.EdToken(f, baseClaims(fuzzNow)))
	f.Add(k.EsToken(f, baseClaims(fuzzNow)))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(t.Context(), token)
		if err != nil {
			if c != nil {
				t.Fatalf("claims returned with error %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v carries no reason", err)
			}
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token of %d parts", len(parts))
		}
		sig, err := b64Strict(parts[2])
		if err != nil {
			t.Fatalf("accepted a token whose signature is not base64url: %v", err)
		}
		input := []byte(parts[0] + "." + parts[1])
		digest := sha256.Sum256(input)
		edOK := ed25519.Verify(k.Ed.Public().(ed25519.PublicKey), input, sig)
		esOK := len(sig) == 64 && ecdsa.Verify(&k.Es.PublicKey, digest[:],
			new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		if !edOK && !esOK {
			t.Fatalf("accepted a token no trusted key signed: %q", token)
		}
		raw, err := b64Strict(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var plain map[string]any
		if err := json.Unmarshal(raw, &plain); err != nil {
			t.Fatalf("accepted claims a JSON decoder refuses: %v", err)
		}
		for name, got := range map[string]string{"iss": c.Issuer, "sub": c.Subject, "jti": c.ID} {
			if want, _ := plain[name].(string); got != want || got == "" {
				t.Fatalf("%s reads %q to the verifier and %q to a JSON decoder", name, got, want)
			}
		}
		if c.ExpiresAt == nil || !c.ExpiresAt.Add(DefaultLeeway).After(fuzzNow) {
			t.Fatalf("accepted a token expired at %v", c.ExpiresAt)
		}
		if exp, ok := plain["exp"].(float64); !ok || int64(exp) != c.ExpiresAt.Unix() {
			t.Fatalf("exp reads %v to the verifier and %v to a JSON decoder", c.ExpiresAt, plain["exp"])
		}
	})
}

func b64Strict(s string) ([]byte, error) { return base64.RawURLEncoding.Strict().DecodeString(s) }

// TestFuzzCorpora rewrites FuzzVerify's committed seed corpus: the attack
// suite, signed with the fixed keys at fuzzNow:
// go test -run TestFuzzCorpora -update ./verifier.
func TestFuzzCorpora(t *testing.T) {
	if !*update {
		t.Skip("rewrites testdata/fuzz with -update")
	}
	k := fuzzKeys(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unsafe := regexp.MustCompile(`[^a-zA-Z0-9]+`)
	write := func(name, token string) {
		name = strings.Trim(unsafe.ReplaceAllString(strings.ToLower(name), "-"), "-")
		data := fmt.Sprintf("go test fuzz v1\nstring(%s)\n", strconv.Quote(token))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, a := range attacks(t, k, fuzzNow) {
		if len(a.token) <= 2*DefaultMaxTokenSize {
			write(fmt.Sprintf("%03d-%s", i+1, a.name), a.token)
		}
	}
}

// FuzzVerifyExternal feeds arbitrary tokens to a Verify that also trusts
// an external issuer, whose claims are arbitrary JSON. None may panic,
// every refusal carries a reason, and an accepted token names that
// issuer (or Herald's) and was signed by one of its keys.
func FuzzVerifyExternal(f *testing.F) {
	k := fuzzKeys(f) // the provider's keys, under its own kids
	ks := NewKeySet(nil, nil)
	signer := trustEventKey(f, ks)
	tr := bus.Trust{Issuer: idpIssuer, Algorithms: []string{bus.AlgEdDSA, bus.AlgES256}, MaxTTL: 3600,
		Claims: bus.TrustClaims{Tenant: "tid", Email: "email"}}
	name, value := verifiertest.TrustEntry(f, signer, tr)
	if err := ks.Put(name, value); err != nil {
		f.Fatal(err)
	}
	for kid, pub := range map[string]any{"ed": k.Ed.Public(), "es": &k.Es.PublicKey} {
		jwk, err := bus.NewJWK(pub)
		if err != nil {
			f.Fatal(err)
		}
		jwk.Kid = kid
		name, value, err := signer.SignExternalKey(idpIssuer, jwk, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		if err := ks.Put(name, value); err != nil {
			f.Fatal(err)
		}
	}
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, CacheSize: -1,
		Now: func() time.Time { return fuzzNow }, OnUnknownKey: func(string, string) {}}, ks, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	claims := map[string]any{"iss": idpIssuer, "sub": "u", "aud": testAudience, "iat": fuzzNow.Unix(),
		"exp": fuzzNow.Add(time.Minute).Unix(), "sid": "s", "azp": "c", "tid": "t", "email": "e@x",
		"groups": []any{"a", map[string]any{"b": nil}}, "scp": []string{"x", "y"}}
	f.Add(signJWT(f, jwt.SigningMethodEdDSA, k.Ed, map[string]any{"alg": "EdDSA", "kid": "ed", "typ": "JWT"}, claims))
	f.Add(signJWT(f, jwt.SigningMethodES256, k.Es, map[string]any{"alg": "ES256", "kid": "es"}, claims))
	claims["sid"], claims["tid"] = 7, []int{1}
	f.Add(signJWT(f, jwt.SigningMethodEdDSA, k.Ed, map[string]any{"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}, claims))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(t.Context(), token)
		if err != nil {
			var e *Error
			if c != nil || !errors.As(err, &e) {
				t.Fatalf("claims %v, error %v without a reason", c, err)
			}
			return
		}
		parts := strings.Split(token, ".")
		sig, err := b64Strict(parts[2])
		if err != nil {
			t.Fatal(err)
		}
		input := []byte(parts[0] + "." + parts[1])
		digest := sha256.Sum256(input)
		if !ed25519.Verify(k.Ed.Public().(ed25519.PublicKey), input, sig) && (len(sig) != 64 ||
			!ecdsa.Verify(&k.Es.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))) {
			t.Fatalf("accepted a token no trusted key signed: %q", token)
		}
		if c.Issuer != idpIssuer && c.Issuer != testIssuer || c.Subject == "" {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}
