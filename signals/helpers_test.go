package signals_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

// Issuers of the tests' configured sources, and one that is not.
const (
	issA     = "https://idp-a.example"
	issB     = "https://idp-b.example"
	issOther = "https://idp-other.example"
)

// now is the tests' clock.
var now = time.Unix(1_800_000_000, 0).UTC()

// testKey is a signing key with the JWK a KeyFunc returns for it.
type testKey struct {
	jwk    bus.JWK
	pub    crypto.PublicKey
	priv   crypto.Signer
	method jwt.SigningMethod
}

// rsaKeys are generated once: two 2048-bit keys take long enough.
var rsaKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	a, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	b, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return a, b
})

// seeded returns a deterministic Ed25519 key.
func seeded(seed string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(seed))
	return ed25519.NewKeyFromSeed(s[:])
}

// newKey returns a key for alg named kid.
func newKey(tb testing.TB, alg, kid string) testKey {
	tb.Helper()
	var priv crypto.Signer
	var method jwt.SigningMethod
	switch alg {
	case bus.AlgEdDSA:
		priv, method = seeded("signals "+kid), jwt.SigningMethodEdDSA
	case bus.AlgES256:
		d := sha256.Sum256([]byte("signals " + kid))
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
		if err != nil {
			tb.Fatal(err)
		}
		priv, method = k, jwt.SigningMethodES256
	case bus.AlgRS256:
		a, _ := rsaKeys()
		priv, method = a, jwt.SigningMethodRS256
	case bus.AlgPS256:
		_, b := rsaKeys()
		priv, method = b, jwt.SigningMethodPS256
	default:
		tb.Fatalf("no key for %s", alg)
	}
	k, err := bus.NewJWK(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	k.Kid, k.Alg = kid, alg
	pub, err := k.ExternalPublicKey()
	if err != nil {
		tb.Fatal(err)
	}
	return testKey{jwk: k, pub: pub, priv: priv, method: method}
}

// keyring holds the keys of the configured sources, by issuer and kid.
type keyring map[[2]string]testKey

func (r keyring) fn(iss, kid string) (bus.JWK, crypto.PublicKey, bool) {
	k, ok := r[[2]string{iss, kid}]
	return k.jwk, k.pub, ok
}

// fixture is a configuration with two sources, A and B, and their keys.
type fixture struct {
	cfg  *signals.Config
	keys map[string]testKey // by kid
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	f := &fixture{keys: map[string]testKey{}}
	ring := keyring{}
	for _, k := range []struct{ iss, alg, kid string }{
		{issA, bus.AlgEdDSA, "a-ed"},
		{issA, bus.AlgES256, "a-es"},
		{issA, bus.AlgRS256, "a-rs"},
		{issA, bus.AlgPS256, "a-ps"},
		{issB, bus.AlgEdDSA, "b-ed"},
	} {
		key := newKey(tb, k.alg, k.kid)
		f.keys[k.kid] = key
		ring[[2]string{k.iss, k.kid}] = key
	}
	f.cfg = &signals.Config{
		Sources: []signals.Source{
			{Issuer: issA, Audiences: []string{"https://herald.example"}, EmailClaim: "email"},
			{Issuer: issB, ClientID: "herald-at-b"},
		},
		Keys: ring.fn,
		Now:  func() time.Time { return now },
	}
	if err := f.cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	return f
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signRaw signs the given header and payload JSON with k, as they are.
func signRaw(tb testing.TB, k testKey, hdr, payload []byte) string {
	tb.Helper()
	signing := b64(hdr) + "." + b64(payload)
	sig, err := k.method.Sign(signing, k.priv)
	if err != nil {
		tb.Fatal(err)
	}
	return signing + "." + b64(sig)
}

// sign signs claims with k under a header of alg, kid and the extra
// members (a nil value deletes a member).
func sign(tb testing.TB, k testKey, extra map[string]any, claims map[string]any) string {
	tb.Helper()
	hdr := map[string]any{"alg": k.jwk.Alg, "kid": k.jwk.Kid}
	for n, v := range extra {
		if v == nil {
			delete(hdr, n)
		} else {
			hdr[n] = v
		}
	}
	return signRaw(tb, k, mustJSON(tb, hdr), mustJSON(tb, claims))
}

// with returns a copy of m with the changes applied (a nil value deletes).
func with(m map[string]any, changes map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}
