// Package verifiertest holds the fixtures the tests of the verifier
// packages share: signing keys in their HERALD_KEYS form, access tokens as
// Herald's issuer writes them (and as an attacker would not), DPoP proofs,
// and publishing keys and revocations on a test bus. It is for _test.go
// files only, and imports none of the verifier packages, so that the
// library's own tests can use it.
package verifiertest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
)

// The issuer and audience of the test tokens.
const (
	Issuer   = "https://issuer.test"
	Audience = "api"
)

// Keys are an Ed25519 and an ES256 signing key with their HERALD_KEYS form.
type Keys struct {
	Ed    ed25519.PrivateKey
	EdKid string
	EdJWK []byte
	Es    *ecdsa.PrivateKey
	EsKid string
	EsJWK []byte
}

// NewKeys returns new random Keys.
func NewKeys(tb testing.TB) *Keys {
	tb.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	k := &Keys{Ed: ed, Es: es}
	k.EdKid, k.EdJWK = JWKOf(tb, ed.Public())
	k.EsKid, k.EsJWK = JWKOf(tb, &es.PublicKey)
	return k
}

// JWKOf returns the kid and the JWK of the public key pub.
func JWKOf(tb testing.TB, pub any) (kid string, data []byte) {
	tb.Helper()
	jwk, err := bus.NewJWK(pub)
	if err != nil {
		tb.Fatal(err)
	}
	data, err = json.Marshal(jwk)
	if err != nil {
		tb.Fatal(err)
	}
	return jwk.Kid, data
}

// B64 is base64url without padding, as JOSE writes it.
func B64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// RandomID returns 24 random hex digits.
func RandomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NumericDate is a JWT NumericDate as Herald's issuer writes it: whole
// seconds, with a three-digit fraction when there are milliseconds.
type NumericDate time.Time

// MarshalJSON implements json.Marshaler.
func (d NumericDate) MarshalJSON() ([]byte, error) {
	t := time.Time(d).Truncate(time.Millisecond)
	ms := t.UnixMilli()
	if ms%1000 == 0 || ms < 0 {
		return strconv.AppendInt(nil, t.Unix(), 10), nil
	}
	return fmt.Appendf(nil, "%d.%03d", ms/1000, ms%1000), nil
}

// BaseClaims returns the claims of a valid Herald access token issued at iat.
func BaseClaims(iat time.Time) map[string]any {
	return map[string]any{
		"iss":       Issuer,
		"sub":       "alice",
		"aud":       Audience,
		"exp":       iat.Add(5 * time.Minute).Unix(),
		"iat":       NumericDate(iat),
		"jti":       RandomID(),
		"client_id": "web",
		"sid":       "sess-" + RandomID(),
		"scope":     "read write",
		"tenant":    "acme",
	}
}

// EncodeJWT returns the signing input of header and claims.
func EncodeJWT(tb testing.TB, header, claims map[string]any) string {
	tb.Helper()
	return B64(MustJSON(tb, header)) + "." + B64(MustJSON(tb, claims))
}

// SignJWT signs header and claims as they are, with method and key.
func SignJWT(tb testing.TB, method jwt.SigningMethod, key any, header, claims map[string]any) string {
	tb.Helper()
	input := EncodeJWT(tb, header, claims)
	sig, err := method.Sign(input, key)
	if err != nil {
		tb.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return input + "." + B64(sig)
}

// EdHeader is the header Herald's issuer writes with the Ed25519 key.
func (k *Keys) EdHeader() map[string]any {
	return map[string]any{"typ": "at+jwt", "alg": bus.AlgEdDSA, "kid": k.EdKid}
}

// EsHeader is the header Herald's issuer writes with the ES256 key.
func (k *Keys) EsHeader() map[string]any {
	return map[string]any{"typ": "at+jwt", "alg": bus.AlgES256, "kid": k.EsKid}
}

// EdToken signs claims with the Ed25519 key and the standard header.
func (k *Keys) EdToken(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return SignJWT(tb, jwt.SigningMethodEdDSA, k.Ed, k.EdHeader(), claims)
}

// EsToken signs claims with the ES256 key and the standard header.
func (k *Keys) EsToken(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return SignJWT(tb, jwt.SigningMethodES256, k.Es, k.EsHeader(), claims)
}

// MustJSON returns the JSON of v.
func MustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// PublishKey publishes the token key data (a JWK) under kid, signed by
// the test event key, which it publishes too.
func PublishKey(tb testing.TB, conn *bus.Conn, kid string, data []byte) {
	tb.Helper()
	jwk, _, err := bus.ParseJWK(data)
	if err != nil || jwk.Kid != kid {
		tb.Fatalf("key %s: %v", kid, err)
	}
	if err := conn.PublishEventKey(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	if err := conn.PublishKey(tb.Context(), jwk); err != nil {
		tb.Fatalf("put key %s: %v", kid, err)
	}
}

// PublishRevocation publishes a revocation made at at, in force for 20
// minutes, and returns its stream sequence.
func PublishRevocation(tb testing.TB, conn *bus.Conn, kind bus.Kind, value string, at time.Time) uint64 {
	tb.Helper()
	return PublishIssuerRevocation(tb, conn, "", kind, value, at)
}

// PublishIssuerRevocation publishes a revocation limited to the tokens of
// issuer iss (none: every issuer's), made at at, in force for 20 minutes,
// and returns its stream sequence.
func PublishIssuerRevocation(tb testing.TB, conn *bus.Conn, iss string, kind bus.Kind, value string, at time.Time) uint64 {
	tb.Helper()
	seq, err := conn.Publish(tb.Context(), &bus.Event{
		ID: bus.NewID(), Type: bus.TypeRevocation, Time: at, Actor: "test",
		Revocation: &bus.Revocation{Kind: kind, Value: value, At: at, Until: at.Add(20 * time.Minute), Issuer: iss},
	})
	if err != nil {
		tb.Fatalf("publish %s revocation: %v", kind, err)
	}
	return seq
}

// DPoPKey is a client's DPoP key (RFC 9449).
type DPoPKey struct {
	Priv ed25519.PrivateKey
	JWK  map[string]string
	JKT  string // its thumbprint, as a bound token's cnf.jkt names it
}

// NewDPoPKey returns a new random DPoPKey.
func NewDPoPKey(tb testing.TB) *DPoPKey {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	j, err := bus.NewJWK(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return &DPoPKey{Priv: priv, JWK: map[string]string{"kty": j.Kty, "crv": j.Crv, "x": j.X}, JKT: j.Kid}
}

// Proof signs a DPoP proof; edit changes header or claims before signing.
func (k *DPoPKey) Proof(tb testing.TB, method, url, accessToken string, edit func(h, c map[string]any)) string {
	tb.Helper()
	h := map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": k.JWK}
	c := map[string]any{"jti": bus.NewID(), "htm": method, "htu": url, "iat": time.Now().Unix()}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if edit != nil {
		edit(h, c)
	}
	hb, _ := json.Marshal(h)
	cb, _ := json.Marshal(c)
	return k.RawProof(tb, string(hb), string(cb))
}

// RawProof signs a DPoP proof whose header and claims are the JSON texts
// given, for members a map cannot hold twice.
func (k *DPoPKey) RawProof(tb testing.TB, header, claims string) string {
	tb.Helper()
	input := B64([]byte(header)) + "." + B64([]byte(claims))
	sig, err := jwt.SigningMethodEdDSA.Sign(input, k.Priv)
	if err != nil {
		tb.Fatal(err)
	}
	return input + "." + B64(sig)
}

// IdP is an external identity provider as a test sees it: its issuer,
// its signing keys of every algorithm Herald accepts from outside, each
// under a kid of the provider's own, and the signed HERALD_KEYS entries an
// issuer publishes for it (a trust entry, one entry per key).
type IdP struct {
	Issuer string
	RSA    *rsa.PrivateKey
	Es     *ecdsa.PrivateKey
	Ed     ed25519.PrivateKey
	// Prefix starts the kids of the provider's keys.
	Prefix string
}

// rsaKey is one 2048-bit RSA key per test binary: generating one costs
// tens of milliseconds, hundreds under the race detector.
var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// NewIdP returns a provider with issuer iss and new EC and Ed25519 keys;
// its RSA key is the test binary's one.
func NewIdP(tb testing.TB, iss string) *IdP {
	tb.Helper()
	rk, err := rsaKey()
	if err != nil {
		tb.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return &IdP{Issuer: iss, RSA: rk, Es: es, Ed: ed, Prefix: RandomID()[:8] + "-"}
}

// Kid returns the provider's kid of its key for alg. RS256 and PS256 use
// the same RSA key under two kids, as a provider publishing both would.
func (p *IdP) Kid(alg string) string { return p.Prefix + strings.ToLower(alg) }

// JWK returns the public key for alg as the provider's JWKS lists it.
func (p *IdP) JWK(tb testing.TB, alg string) bus.JWK {
	tb.Helper()
	var pub any
	switch alg {
	case bus.AlgRS256, bus.AlgPS256:
		pub = &p.RSA.PublicKey
	case bus.AlgES256:
		pub = &p.Es.PublicKey
	case bus.AlgEdDSA:
		pub = p.Ed.Public()
	default:
		tb.Fatalf("no key for %s", alg)
	}
	k, err := bus.NewJWK(pub)
	if err != nil {
		tb.Fatal(err)
	}
	k.Alg, k.Kid = alg, p.Kid(alg)
	return k
}

// KeyEntry returns the HERALD_KEYS entry of the provider's key for alg,
// signed by signer, and the name it is stored under; its tokens live at
// most maxTTL.
func (p *IdP) KeyEntry(tb testing.TB, signer *bus.Signer, alg string, maxTTL time.Duration) (name string, value []byte) {
	tb.Helper()
	name, value, err := signer.SignExternalKey(p.Issuer, p.JWK(tb, alg), maxTTL)
	if err != nil {
		tb.Fatal(err)
	}
	return name, value
}

// Trust returns a trust entry for the provider accepting every algorithm,
// tokens of up to an hour, and the default claim names.
func (p *IdP) Trust() bus.Trust {
	return bus.Trust{Issuer: p.Issuer, Algorithms: bus.ExternalAlgorithms(), MaxTTL: 3600}
}

// TrustEntry returns t's HERALD_KEYS entry, signed by signer, and the name
// it is stored under.
func TrustEntry(tb testing.TB, signer *bus.Signer, t bus.Trust) (name string, value []byte) {
	tb.Helper()
	name, value, err := signer.SignTrust(t)
	if err != nil {
		tb.Fatal(err)
	}
	return name, value
}

// Claims returns the claims of a valid access token of the provider for
// Audience, issued at iat, as Keycloak writes them.
func (p *IdP) Claims(iat time.Time) map[string]any {
	return map[string]any{
		"iss":          p.Issuer,
		"sub":          "user-" + RandomID()[:8],
		"aud":          Audience,
		"exp":          iat.Add(5 * time.Minute).Unix(),
		"iat":          iat.Unix(),
		"jti":          RandomID(),
		"azp":          "spa",
		"sid":          "kc-" + RandomID(),
		"scope":        "openid profile",
		"typ":          "Bearer",
		"realm_access": map[string]any{"roles": []string{"user"}},
	}
}

// Token signs claims with the provider's key for alg, under a header with
// its kid and typ JWT; edit, if not nil, changes the header first.
func (p *IdP) Token(tb testing.TB, alg string, claims map[string]any, edit func(h map[string]any)) string {
	tb.Helper()
	h := map[string]any{"alg": alg, "kid": p.Kid(alg), "typ": "JWT"}
	if edit != nil {
		edit(h)
	}
	var (
		method jwt.SigningMethod
		key    any
	)
	switch alg {
	case bus.AlgRS256:
		method, key = jwt.SigningMethodRS256, p.RSA
	case bus.AlgPS256:
		method, key = jwt.SigningMethodPS256, p.RSA
	case bus.AlgES256:
		method, key = jwt.SigningMethodES256, p.Es
	case bus.AlgEdDSA:
		method, key = jwt.SigningMethodEdDSA, p.Ed
	default:
		tb.Fatalf("no key for %s", alg)
	}
	return SignJWT(tb, method, key, h, claims)
}

// PublishEntry puts a signed HERALD_KEYS entry (KeyEntry, TrustEntry) in
// the bucket through conn.
func PublishEntry(tb testing.TB, conn *bus.Conn, name string, value []byte) {
	tb.Helper()
	kv, err := conn.Keys(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := kv.Put(tb.Context(), name, value); err != nil {
		tb.Fatalf("put %s: %v", name, err)
	}
}
