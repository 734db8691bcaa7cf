package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/internal/jsonstrict"
	"github.com/heraldsec/herald/verifier"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "api"
)

// testKeys are an Ed25519 and an ES256 signing key with their HERALD_KEYS form.
type testKeys struct {
	ed    ed25519.PrivateKey
	edKid string
	edJWK []byte
	es    *ecdsa.PrivateKey
	esKid string
	esJWK []byte
}

func newTestKeys(tb testing.TB) *testKeys {
	tb.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	k := &testKeys{ed: ed, es: es}
	k.edKid, k.edJWK = jwkOf(tb, ed.Public())
	k.esKid, k.esJWK = jwkOf(tb, &es.PublicKey)
	return k
}

func jwkOf(tb testing.TB, pub any) (kid string, data []byte) {
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

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// baseClaims returns the claims of a valid Herald access token issued at iat.
func baseClaims(iat time.Time) map[string]any {
	return map[string]any{
		"iss":       testIssuer,
		"sub":       "alice",
		"aud":       testAudience,
		"exp":       iat.Add(5 * time.Minute).Unix(),
		"iat":       verifier.NewNumericDate(iat),
		"jti":       randomID(),
		"client_id": "web",
		"sid":       "sess-" + randomID(),
		"scope":     "read write",
		"tenant":    "acme",
	}
}

// encodeJWT returns the signing input of header and claims.
func encodeJWT(tb testing.TB, header, claims map[string]any) string {
	tb.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return b64(hb) + "." + b64(cb)
}

// signJWT signs header and claims as they are, with method and key.
func signJWT(tb testing.TB, method jwt.SigningMethod, key any, header, claims map[string]any) string {
	tb.Helper()
	input := encodeJWT(tb, header, claims)
	sig, err := method.Sign(input, key)
	if err != nil {
		tb.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return input + "." + b64(sig)
}

// edHeader and esHeader are the headers Herald's issuer writes.
func (k *testKeys) edHeader() map[string]any {
	return map[string]any{"typ": "at+jwt", "alg": bus.AlgEdDSA, "kid": k.edKid}
}

func (k *testKeys) esHeader() map[string]any {
	return map[string]any{"typ": "at+jwt", "alg": bus.AlgES256, "kid": k.esKid}
}

// edToken signs claims with the Ed25519 key and the standard header.
func (k *testKeys) edToken(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return signJWT(tb, jwt.SigningMethodEdDSA, k.ed, k.edHeader(), claims)
}

// esToken signs claims with the ES256 key and the standard header.
func (k *testKeys) esToken(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return signJWT(tb, jwt.SigningMethodES256, k.es, k.esHeader(), claims)
}

// fixture is a real embedded NATS with Herald's streams, both test keys
// published in HERALD_KEYS, and a running sidecar that is ready.
type fixture struct {
	*testKeys
	srv  *natsserver.Server
	conn *bus.Conn
	dir  string
	sc   *Sidecar
	stop func()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureMaxAge(t, 20*time.Minute)
}

func newFixtureMaxAge(t *testing.T, maxAge time.Duration) *fixture {
	t.Helper()
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, maxAge)
	f := &fixture{testKeys: newTestKeys(t), srv: s, conn: conn, dir: t.TempDir()}
	publishKey(t, conn, f.edKid, f.edJWK)
	publishKey(t, conn, f.esKid, f.esJWK)
	f.sc, f.stop = startSidecar(t, conn, f.dir)
	waitReady(t, f.sc)
	return f
}

// publishKey publishes the token key data (a JWK) under kid, signed by
// the test event key, which it publishes too.
func publishKey(t testing.TB, conn *bus.Conn, kid string, data []byte) {
	t.Helper()
	jwk, _, err := bus.ParseJWK(data)
	if err != nil || jwk.Kid != kid {
		t.Fatalf("key %s: %v", kid, err)
	}
	if err := conn.PublishEventKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := conn.PublishKey(t.Context(), jwk); err != nil {
		t.Fatalf("put key %s: %v", kid, err)
	}
}

// putKey adds the token key data (a JWK) to ks as the bucket would hold
// it: signed by the test event key, which ks then trusts.
func putKey(tb testing.TB, ks *verifier.KeySet, data []byte) error {
	tb.Helper()
	signer := bustest.Signer(tb)
	event, err := json.Marshal(signer.JWK())
	if err != nil {
		tb.Fatal(err)
	}
	if err := ks.Put(bus.EventKeyPrefix+signer.KeyID(), event); err != nil {
		tb.Fatalf("trust event key: %v", err)
	}
	jwk, _, err := bus.ParseJWK(data)
	if err != nil {
		return err
	}
	entry, err := signer.SignKey(jwk)
	if err != nil {
		tb.Fatal(err)
	}
	return ks.Put(jwk.Kid, entry)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startSidecar opens a sidecar on dir and runs it. The returned stop
// cancels Run, waits for it and closes the sidecar; it runs at cleanup if
// the test does not call it, and may be called more than once.
func startSidecar(t *testing.T, conn *bus.Conn, dir string) (*Sidecar, func()) {
	t.Helper()
	return startSidecarWith(t, conn, Config{DataDir: dir})
}

// startSidecarWith is startSidecar with more of the config: the verifier
// config, listen address and logger are filled in when left zero.
func startSidecarWith(t *testing.T, conn *bus.Conn, cfg Config) (*Sidecar, func()) {
	t.Helper()
	if cfg.Verifier.Issuer == "" {
		cfg.Verifier = verifier.Config{Issuer: testIssuer, Audience: testAudience}
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	sc, err := Open(cfg, conn)
	if err != nil {
		t.Fatalf("open sidecar: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("sidecar run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("sidecar run did not return after cancel")
				return
			}
			if err := sc.Close(); err != nil {
				t.Errorf("close sidecar: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return sc, stop
}

func waitReady(t *testing.T, sc *Sidecar) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := sc.Status(); !st.Ready {
			return fmt.Errorf("sidecar not ready: %+v", st)
		}
		return nil
	})
}

// revoke publishes a revocation made at at and waits until sc has applied it.
func revoke(t *testing.T, conn *bus.Conn, sc *Sidecar, kind bus.Kind, value string, at time.Time) uint64 {
	t.Helper()
	seq := publishRevocation(t, conn, kind, value, at)
	if sc != nil {
		waitApplied(t, sc, seq)
	}
	return seq
}

func publishRevocation(t *testing.T, conn *bus.Conn, kind bus.Kind, value string, at time.Time) uint64 {
	t.Helper()
	seq, err := conn.Publish(t.Context(), &bus.Event{
		ID: bus.NewID(), Type: bus.TypeRevocation, Time: at, Actor: "test",
		Revocation: &bus.Revocation{Kind: kind, Value: value, At: at, Until: at.Add(20 * time.Minute)},
	})
	if err != nil {
		t.Fatalf("publish %s revocation: %v", kind, err)
	}
	return seq
}

func waitApplied(t *testing.T, sc *Sidecar, seq uint64) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if got := sc.Status().Applied; got < seq {
			return fmt.Errorf("applied %d, want %d", got, seq)
		}
		return nil
	})
}

// checkVerdict asserts that err wraps want (nil for success) and carries
// want's reason code.
func checkVerdict(t *testing.T, err error, want *verifier.Error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("Verify: %v (reason %s), want success", err, verifier.Reason(err))
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("Verify error = %v, want %v", err, want)
	}
	if got := verifier.Reason(err); got != want.Reason {
		t.Fatalf("Reason = %q, want %q", got, want.Reason)
	}
}

// attack is one token of the suite and the verdict it must get.
type attack struct {
	name  string
	token string
	// want is the reason it is refused for; nil marks the few look-alikes
	// that are valid tokens and must be accepted (documented in the name).
	want *verifier.Error
	// noHTTP marks tokens no HTTP request can carry (line breaks, or over
	// the server's header limit): the HTTP server refuses those requests
	// itself, see TestSidecar_HeaderAbuse.
	noHTTP bool
}

// forge builds tokens byte for byte: headers and claims are JSON texts,
// signed as they are.
type forge struct {
	tb  testing.TB
	k   *testKeys
	now time.Time
}

// claims returns the JSON text of valid claims, changed by mut if not nil.
func (f *forge) claims(mut func(c map[string]any)) string {
	c := baseClaims(f.now)
	if mut != nil {
		mut(c)
	}
	return string(mustJSON(f.tb, c))
}

// edHdr and esHdr return the JSON text of the issuer's header, changed by mut.
func (f *forge) edHdr(mut func(h map[string]any)) string {
	h := f.k.edHeader()
	if mut != nil {
		mut(h)
	}
	return string(mustJSON(f.tb, h))
}

func (f *forge) esHdr(mut func(h map[string]any)) string {
	h := f.k.esHeader()
	if mut != nil {
		mut(h)
	}
	return string(mustJSON(f.tb, h))
}

// segments signs the given encoded header and claims segments as they are.
func (f *forge) segments(m jwt.SigningMethod, key any, hseg, cseg string) string {
	f.tb.Helper()
	in := hseg + "." + cseg
	sig, err := m.Sign(in, key)
	if err != nil {
		f.tb.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return in + "." + b64(sig)
}

func (f *forge) sign(m jwt.SigningMethod, key any, hdr, claims string) string {
	return f.segments(m, key, b64([]byte(hdr)), b64([]byte(claims)))
}

// ed and es sign with the trusted keys.
func (f *forge) ed(hdr, claims string) string {
	return f.sign(jwt.SigningMethodEdDSA, f.k.ed, hdr, claims)
}

func (f *forge) es(hdr, claims string) string {
	return f.sign(jwt.SigningMethodES256, f.k.es, hdr, claims)
}

// withMember returns the JSON object text obj with member added at its end.
func withMember(obj, member string) string {
	return strings.TrimSuffix(obj, "}") + "," + member + "}"
}

// withSig returns tok with its signature replaced by sig.
func withSig(tok string, sig []byte) string {
	return tok[:strings.LastIndexByte(tok, '.')+1] + b64(sig)
}

// sigOf returns the decoded signature of tok.
func sigOf(tb testing.TB, tok string) []byte {
	tb.Helper()
	sig, err := jwt.NewParser().DecodeSegment(tok[strings.LastIndexByte(tok, '.')+1:])
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

// nonCanonical returns seg with an unused low bit of its last character set:
// a lenient decoder reads the same bytes, a strict one refuses it.
func nonCanonical(tb testing.TB, seg string) string {
	tb.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(seg)%4 == 0 {
		tb.Fatalf("segment of %d characters has no unused bits", len(seg))
	}
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i|1])
}

// withUnusedBits pads the JSON text js with spaces until its base64url form
// has unused bits in its last character.
func withUnusedBits(js string) string {
	for len(js)%3 == 0 {
		js += " "
	}
	return js
}

// ecdsaSig returns r||s as ES256 encodes it (RFC 7518 section 3.4).
func ecdsaSig(r, s *big.Int) []byte {
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// attacks returns the suite for the keys of k, valid at now.
func attacks(tb testing.TB, k *testKeys, now time.Time) []attack {
	f := &forge{tb: tb, k: k, now: now}
	valid := f.ed(f.edHdr(nil), f.claims(nil))
	validES := f.es(f.esHdr(nil), f.claims(nil))
	parts := strings.Split(valid, ".")
	edPub := k.ed.Public().(ed25519.PublicKey)
	pkix, err := x509.MarshalPKIXPublicKey(edPub)
	if err != nil {
		tb.Fatal(err)
	}
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	_, mallory, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	malloryES, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	malloryKid, malloryJWK := jwkOf(tb, mallory.Public())
	with := func(mut func(c map[string]any)) string { return f.ed(f.edHdr(nil), f.claims(mut)) }
	edHdr := func(mut func(h map[string]any)) string { return f.ed(f.edHdr(mut), f.claims(nil)) }
	unsigned := func(alg any) string {
		return b64([]byte(f.edHdr(func(h map[string]any) { h["alg"] = alg }))) + "." + parts[1] + "."
	}
	hmac := func(m jwt.SigningMethod, key []byte, kid string) string {
		return f.sign(m, key, f.edHdr(func(h map[string]any) { h["alg"] = m.Alg(); h["kid"] = kid }), f.claims(nil))
	}
	byMallory := func(mut func(h map[string]any)) string {
		return f.sign(jwt.SigningMethodEdDSA, mallory, f.edHdr(mut), f.claims(nil))
	}
	kid := func(v any) string { return byMallory(func(h map[string]any) { h["kid"] = v }) }
	// rawClaims signs a claims text exactly as given, for members that
	// json.Marshal of a map cannot write (duplicates, bad UTF-8).
	rawClaims := func(claims string) string { return f.ed(f.edHdr(nil), claims) }
	rawHdr := func(hdr string) string { return f.ed(hdr, f.claims(nil)) }
	later := func(d time.Duration) int64 { return now.Add(d).Unix() }

	params := elliptic.P256().Params()
	n, p := params.N, params.P
	esSig := sigOf(tb, validES)
	r, s := new(big.Int).SetBytes(esSig[:32]), new(big.Int).SetBytes(esSig[32:])
	zero, one := big.NewInt(0), big.NewInt(1)
	max256 := new(big.Int).Sub(new(big.Int).Lsh(one, 256), one)
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		tb.Fatal(err)
	}
	// Ed25519 S + L: the same signature but for a non-canonical S.
	edSig := sigOf(tb, valid)
	ell, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	sLE := slices.Clone(edSig[32:])
	slices.Reverse(sLE)
	sPlusL := new(big.Int).Add(new(big.Int).SetBytes(sLE), ell).FillBytes(make([]byte, 32))
	slices.Reverse(sPlusL)
	edMalleated := append(slices.Clone(edSig[:32]), sPlusL...)

	claimsJSON := f.claims(nil)
	tooMany := claimsJSON
	for i := range jsonstrict.MaxMembers {
		tooMany = withMember(tooMany, fmt.Sprintf(`"x%d":%d`, i, i))
	}
	nested := withMember(claimsJSON, `"x":`+strings.Repeat("[", 2500)+strings.Repeat("]", 2500))

	return []attack{
		// Look-alikes that are valid: the suite checks they still pass.
		{name: "valid EdDSA", token: valid},
		{name: "valid ES256", token: validES},
		// ECDSA signatures are malleable: (r, n-s) verifies wherever (r, s)
		// does. Go's crypto/ecdsa accepts both, as RFC 7518 and Wycheproof
		// (which marks such vectors valid) do, and half of the signatures
		// Go makes have a high s, so refusing them would refuse real
		// tokens. It forges nothing: the claims and jti are the ones
		// signed, and revocations match by jti, sid, sub..., never by the
		// token's bytes.
		{name: "ES256 high-s twin of a valid signature is accepted", token: withSig(validES, ecdsaSig(r, new(big.Int).Sub(n, s)))},
		{name: "escaped member name is the member (\\u0073ub)", token: rawClaims(strings.Replace(claimsJSON, `"sub":`, `"\u0073ub":`, 1))},
		{name: "surrogate pair in a claim is valid UTF-16", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, `"sub":"al\ud83d\ude00ice"`, 1))},
		{name: "deeply nested unknown claim is skipped, not recursed", token: rawClaims(nested)},

		// jwt_tool -X a: alg none, and every spelling of it.
		{name: "alg none", token: unsigned("none"), want: verifier.ErrAlgorithm},
		{name: "alg None", token: unsigned("None"), want: verifier.ErrAlgorithm},
		{name: "alg NONE", token: unsigned("NONE"), want: verifier.ErrAlgorithm},
		{name: "alg nOnE", token: unsigned("nOnE"), want: verifier.ErrAlgorithm},
		{name: "alg none with the original signature kept", token: unsigned("none") + parts[2], want: verifier.ErrAlgorithm},
		{name: "alg empty", token: unsigned(""), want: verifier.ErrAlgorithm},
		{name: "alg null", token: unsigned(nil), want: verifier.ErrAlgorithm},
		{name: "alg a number", token: unsigned(0), want: verifier.ErrMalformed},
		{name: "alg eddsa (case)", token: edHdr(func(h map[string]any) { h["alg"] = "eddsa" }), want: verifier.ErrAlgorithm},
		{name: "alg with trailing space", token: edHdr(func(h map[string]any) { h["alg"] = "EdDSA " }), want: verifier.ErrAlgorithm},
		{name: "alg Ed25519 (RFC 9864 name, not allowed)", token: edHdr(func(h map[string]any) { h["alg"] = "Ed25519" }), want: verifier.ErrAlgorithm},
		{name: "alg RS256", token: edHdr(func(h map[string]any) { h["alg"] = "RS256" }), want: verifier.ErrAlgorithm},
		{name: "alg PS256", token: edHdr(func(h map[string]any) { h["alg"] = "PS256" }), want: verifier.ErrAlgorithm},
		{name: "alg ES384", token: edHdr(func(h map[string]any) { h["alg"] = "ES384" }), want: verifier.ErrAlgorithm},
		{name: "alg ES256K", token: edHdr(func(h map[string]any) { h["alg"] = "ES256K" }), want: verifier.ErrAlgorithm},

		// jwt_tool -X n: null signature.
		{name: "null signature EdDSA", token: parts[0] + "." + parts[1] + ".", want: verifier.ErrBadSignature},
		{name: "null signature ES256", token: withSig(validES, nil), want: verifier.ErrBadSignature},

		// jwt_tool -X b and -X k: HMAC with a blank password, or keyed with
		// what the verifier holds as a public key (algorithm confusion).
		{name: "HS256 with a blank password", token: hmac(jwt.SigningMethodHS256, []byte{}, k.edKid), want: verifier.ErrAlgorithm},
		{name: "HS256 keyed with the raw public key", token: hmac(jwt.SigningMethodHS256, edPub, k.edKid), want: verifier.ErrAlgorithm},
		{name: "HS256 keyed with the public key's PEM", token: hmac(jwt.SigningMethodHS256, edPEM, k.edKid), want: verifier.ErrAlgorithm},
		{name: "HS256 keyed with the JWK from HERALD_KEYS", token: hmac(jwt.SigningMethodHS256, k.edJWK, k.edKid), want: verifier.ErrAlgorithm},
		{name: "HS256 keyed with the ES256 JWK", token: hmac(jwt.SigningMethodHS256, k.esJWK, k.esKid), want: verifier.ErrAlgorithm},
		{name: "HS384 keyed with the public key", token: hmac(jwt.SigningMethodHS384, edPub, k.edKid), want: verifier.ErrAlgorithm},
		{name: "HS512 keyed with the public key", token: hmac(jwt.SigningMethodHS512, edPub, k.edKid), want: verifier.ErrAlgorithm},
		{name: "EdDSA header on the ES256 key", token: f.ed(f.edHdr(func(h map[string]any) { h["kid"] = k.esKid }), f.claims(nil)), want: verifier.ErrAlgorithm},
		{name: "ES256 header on the EdDSA key", token: f.es(f.esHdr(func(h map[string]any) { h["kid"] = k.edKid }), f.claims(nil)), want: verifier.ErrAlgorithm},

		// jwt_tool -X s and -X i, and x5u/x5c: keys named or carried by
		// the token are never used (RFC 8725 section 3.10); the token is
		// refused before any key is looked up, even when it also names a
		// trusted kid.
		{name: "jku to the attacker's JWKS", token: byMallory(func(h map[string]any) { h["kid"] = malloryKid; h["jku"] = "https://evil.test/jwks.json" }), want: verifier.ErrMalformed},
		{name: "jku with a trusted kid", token: edHdr(func(h map[string]any) { h["jku"] = "https://evil.test/jwks.json" }), want: verifier.ErrMalformed},
		{name: "embedded jwk of the attacker's key (CVE-2018-0114)", token: byMallory(func(h map[string]any) { h["kid"] = malloryKid; h["jwk"] = json.RawMessage(malloryJWK) }), want: verifier.ErrMalformed},
		{name: "embedded jwk null", token: edHdr(func(h map[string]any) { h["jwk"] = nil }), want: verifier.ErrMalformed},
		{name: "x5u to the attacker's certificate", token: byMallory(func(h map[string]any) { h["x5u"] = "https://evil.test/cert.pem" }), want: verifier.ErrMalformed},
		{name: "x5c with the attacker's certificate", token: byMallory(func(h map[string]any) { h["x5c"] = []string{"MIIBszCCAVmgAwIBAgIU"} }), want: verifier.ErrMalformed},

		// kid injection (jwt_tool playbook): the kid is only ever a key
		// in an in-memory map of HERALD_KEYS, never a path, query or
		// command.
		{name: "kid path traversal with HS256 and an empty key (/dev/null)", token: hmac(jwt.SigningMethodHS256, []byte{}, "../../../../../../dev/null"), want: verifier.ErrAlgorithm},
		{name: "kid ../../etc/passwd", token: kid("../../etc/passwd"), want: verifier.ErrUnknownKey},
		{name: "kid /proc/sys/kernel/randomize_va_space", token: kid("/proc/sys/kernel/randomize_va_space"), want: verifier.ErrUnknownKey},
		{name: "kid SQL injection", token: kid("x' UNION SELECT 'AAAA'-- "), want: verifier.ErrUnknownKey},
		{name: "kid command injection", token: kid("key|/usr/bin/id;$(id)`id`"), want: verifier.ErrUnknownKey},
		{name: "kid with spaces", token: kid("kid with spaces"), want: verifier.ErrUnknownKey},
		{name: "kid with CRLF and a header", token: kid("x\r\nX-Herald-Subject: admin"), want: verifier.ErrUnknownKey},
		{name: "kid with NUL", token: kid("x\x00y"), want: verifier.ErrUnknownKey},
		{name: "kid very long", token: kid(strings.Repeat("k", 4000)), want: verifier.ErrUnknownKey},
		{name: "kid of a trusted key in upper case", token: kid(strings.ToUpper(k.edKid)), want: verifier.ErrUnknownKey},
		{name: "kid empty", token: kid(""), want: verifier.ErrUnknownKey},
		{name: "kid null", token: kid(nil), want: verifier.ErrUnknownKey},
		{name: "kid a number", token: kid(1), want: verifier.ErrMalformed},
		{name: "kid an array", token: kid([]string{k.edKid}), want: verifier.ErrMalformed},

		// Another key signs under a trusted kid.
		{name: "EdDSA signature of another key with the same kid", token: byMallory(nil), want: verifier.ErrBadSignature},
		{name: "ES256 signature of another key with the same kid", token: f.sign(jwt.SigningMethodES256, malloryES, f.esHdr(nil), f.claims(nil)), want: verifier.ErrBadSignature},
		{name: "signature of another token", token: withSig(valid, sigOf(tb, f.ed(f.edHdr(nil), f.claims(nil)))), want: verifier.ErrBadSignature},
		{name: "claims swapped under a valid signature", token: parts[0] + "." + b64([]byte(f.claims(func(c map[string]any) { c["sub"] = "admin" }))) + "." + parts[2], want: verifier.ErrBadSignature},

		// Psychic signatures (CVE-2022-21449) and Wycheproof's invalid
		// ECDSA signatures. Go's crypto/ecdsa requires 0 < r, s < n.
		{name: "ES256 r=s=0 psychic signature (CVE-2022-21449)", token: withSig(validES, ecdsaSig(zero, zero)), want: verifier.ErrBadSignature},
		{name: "ES256 r=0", token: withSig(validES, ecdsaSig(zero, s)), want: verifier.ErrBadSignature},
		{name: "ES256 s=0", token: withSig(validES, ecdsaSig(r, zero)), want: verifier.ErrBadSignature},
		{name: "ES256 r=s=n", token: withSig(validES, ecdsaSig(n, n)), want: verifier.ErrBadSignature},
		{name: "ES256 r=n", token: withSig(validES, ecdsaSig(n, s)), want: verifier.ErrBadSignature},
		{name: "ES256 s=n", token: withSig(validES, ecdsaSig(r, n)), want: verifier.ErrBadSignature},
		{name: "ES256 r=n+1 (above n)", token: withSig(validES, ecdsaSig(new(big.Int).Add(n, one), s)), want: verifier.ErrBadSignature},
		{name: "ES256 r=p (the field prime)", token: withSig(validES, ecdsaSig(p, s)), want: verifier.ErrBadSignature},
		{name: "ES256 r=s=2^256-1", token: withSig(validES, ecdsaSig(max256, max256)), want: verifier.ErrBadSignature},
		{name: "ES256 r=s=1", token: withSig(validES, ecdsaSig(one, one)), want: verifier.ErrBadSignature},
		{name: "ES256 r and s swapped", token: withSig(validES, ecdsaSig(s, r)), want: verifier.ErrBadSignature},
		{name: "ES256 r=s=n-1", token: withSig(validES, ecdsaSig(new(big.Int).Sub(n, one), new(big.Int).Sub(n, one))), want: verifier.ErrBadSignature},
		{name: "ES256 DER signature instead of r||s", token: withSig(validES, der), want: verifier.ErrBadSignature},
		{name: "ES256 signature of 63 bytes", token: withSig(validES, esSig[:63]), want: verifier.ErrBadSignature},
		{name: "ES256 signature of 65 bytes", token: withSig(validES, append(slices.Clone(esSig), 0)), want: verifier.ErrBadSignature},
		{name: "EdDSA S+L, non-canonical (RFC 8032 5.1.7)", token: withSig(valid, edMalleated), want: verifier.ErrBadSignature},
		{name: "EdDSA all-zero signature", token: withSig(valid, make([]byte, 64)), want: verifier.ErrBadSignature},
		{name: "EdDSA signature of 63 bytes", token: withSig(valid, edSig[:63]), want: verifier.ErrBadSignature},

		// crit: no extension is understood, so none may be critical
		// (RFC 7515 section 4.1.11).
		{name: "crit unknown", token: edHdr(func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 }), want: verifier.ErrMalformed},
		{name: "crit b64 (RFC 7797 unencoded payload)", token: edHdr(func(h map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }), want: verifier.ErrMalformed},
		{name: "crit empty", token: edHdr(func(h map[string]any) { h["crit"] = []string{} }), want: verifier.ErrMalformed},
		{name: "crit null", token: edHdr(func(h map[string]any) { h["crit"] = nil }), want: verifier.ErrMalformed},

		// typ confusion (RFC 8725 section 3.11, RFC 9068 section 4): other
		// JWTs signed by the same key are not access tokens.
		{name: "typ JWT (an ID token)", token: edHdr(func(h map[string]any) { h["typ"] = "JWT" }), want: verifier.ErrType},
		{name: "typ rt+jwt (a refresh token)", token: edHdr(func(h map[string]any) { h["typ"] = "rt+jwt" }), want: verifier.ErrType},
		{name: "typ secevent+jwt (a security event)", token: edHdr(func(h map[string]any) { h["typ"] = "secevent+jwt" }), want: verifier.ErrType},
		{name: "typ dpop+jwt (a DPoP proof)", token: edHdr(func(h map[string]any) { h["typ"] = "dpop+jwt" }), want: verifier.ErrType},
		{name: "typ at+jwt with a suffix", token: edHdr(func(h map[string]any) { h["typ"] = "at+jwt; x" }), want: verifier.ErrType},
		{name: "typ missing", token: edHdr(func(h map[string]any) { delete(h, "typ") }), want: verifier.ErrType},
		{name: "typ an array", token: edHdr(func(h map[string]any) { h["typ"] = []string{"at+jwt"} }), want: verifier.ErrMalformed},

		// iss, aud, exp, nbf, iat.
		{name: "iss wrong", token: with(func(c map[string]any) { c["iss"] = "https://evil.test" }), want: verifier.ErrIssuer},
		{name: "iss with a trailing slash", token: with(func(c map[string]any) { c["iss"] = testIssuer + "/" }), want: verifier.ErrIssuer},
		{name: "iss in upper case", token: with(func(c map[string]any) { c["iss"] = strings.ToUpper(testIssuer) }), want: verifier.ErrIssuer},
		{name: "iss missing", token: with(func(c map[string]any) { delete(c, "iss") }), want: verifier.ErrMalformed},
		{name: "iss an array", token: with(func(c map[string]any) { c["iss"] = []string{testIssuer} }), want: verifier.ErrMalformed},
		{name: "aud wrong", token: with(func(c map[string]any) { c["aud"] = "other" }), want: verifier.ErrAudience},
		{name: "aud in upper case", token: with(func(c map[string]any) { c["aud"] = strings.ToUpper(testAudience) }), want: verifier.ErrAudience},
		{name: "aud missing", token: with(func(c map[string]any) { delete(c, "aud") }), want: verifier.ErrMalformed},
		{name: "aud empty array", token: with(func(c map[string]any) { c["aud"] = []string{} }), want: verifier.ErrMalformed},
		{name: "aud an object", token: with(func(c map[string]any) { c["aud"] = map[string]string{testAudience: testAudience} }), want: verifier.ErrMalformed},
		{name: "exp missing", token: with(func(c map[string]any) { delete(c, "exp") }), want: verifier.ErrMalformed},
		{name: "exp null", token: with(func(c map[string]any) { c["exp"] = nil }), want: verifier.ErrMalformed},
		{name: "exp in the past", token: with(func(c map[string]any) { c["exp"] = later(-time.Hour) }), want: verifier.ErrExpired},
		{name: "exp zero", token: with(func(c map[string]any) { c["exp"] = 0 }), want: verifier.ErrExpired},
		{name: "exp as a string", token: with(func(c map[string]any) { c["exp"] = fmt.Sprint(later(time.Hour)) }), want: verifier.ErrMalformed},
		{name: "exp 1e300", token: with(func(c map[string]any) { c["exp"] = json.RawMessage("1e300") }), want: verifier.ErrMalformed},
		{name: "exp 1.9e9 in exponent form", token: with(func(c map[string]any) { c["exp"] = json.RawMessage("1.9e9") }), want: verifier.ErrMalformed},
		{name: "exp negative", token: with(func(c map[string]any) { c["exp"] = -1 }), want: verifier.ErrMalformed},
		{name: "exp thirteen digits", token: with(func(c map[string]any) { c["exp"] = json.RawMessage("9999999999999") }), want: verifier.ErrMalformed},
		{name: "exp true", token: with(func(c map[string]any) { c["exp"] = true }), want: verifier.ErrMalformed},
		{name: "nbf in the future", token: with(func(c map[string]any) { c["nbf"] = later(time.Hour) }), want: verifier.ErrNotYetValid},
		{name: "nbf as a string", token: with(func(c map[string]any) { c["nbf"] = "0" }), want: verifier.ErrMalformed},
		{name: "iat in the future beyond the leeway", token: with(func(c map[string]any) {
			c["iat"] = later(verifier.DefaultLeeway + time.Minute)
			c["exp"] = later(time.Hour)
		}), want: verifier.ErrNotYetValid},
		{name: "iat missing", token: with(func(c map[string]any) { delete(c, "iat") }), want: verifier.ErrMalformed},
		{name: "sub missing", token: with(func(c map[string]any) { delete(c, "sub") }), want: verifier.ErrMalformed},
		{name: "sub empty", token: with(func(c map[string]any) { c["sub"] = "" }), want: verifier.ErrMalformed},
		{name: "sub a number", token: with(func(c map[string]any) { c["sub"] = 1 }), want: verifier.ErrMalformed},
		{name: "jti missing", token: with(func(c map[string]any) { delete(c, "jti") }), want: verifier.ErrMalformed},
		{name: "claims null", token: rawClaims("null"), want: verifier.ErrMalformed},
		{name: "claims an array", token: rawClaims("[" + claimsJSON + "]"), want: verifier.ErrMalformed},
		{name: "claims with trailing data", token: rawClaims(claimsJSON + "{}"), want: verifier.ErrMalformed},
		{name: "claims with more members than any token has", token: rawClaims(tooMany), want: verifier.ErrMalformed},

		// Duplicate members: encoding/json keeps the last one silently.
		// RFC 7515 section 5.2 and RFC 7519 section 4 let a parser refuse
		// them, and one that keeps the first would read another token.
		{name: "duplicate sub", token: rawClaims(withMember(claimsJSON, `"sub":"admin"`)), want: verifier.ErrMalformed},
		{name: "duplicate exp", token: rawClaims(withMember(claimsJSON, fmt.Sprintf(`"exp":%d`, later(time.Hour)))), want: verifier.ErrMalformed},
		{name: "duplicate unknown claim", token: rawClaims(withMember(withMember(claimsJSON, `"x":1`), `"x":2`)), want: verifier.ErrMalformed},
		{name: "duplicate sub, one escaped", token: rawClaims(withMember(claimsJSON, `"\u0073ub":"admin"`)), want: verifier.ErrMalformed},
		{name: "duplicate alg in the header", token: rawHdr(withMember(f.edHdr(func(h map[string]any) { h["alg"] = "none" }), `"alg":"EdDSA"`)), want: verifier.ErrMalformed},
		{name: "duplicate kid in the header", token: rawHdr(withMember(f.edHdr(nil), `"kid":"`+k.edKid+`"`)), want: verifier.ErrMalformed},
		{name: "duplicate typ in the header", token: rawHdr(withMember(f.edHdr(func(h map[string]any) { h["typ"] = "JWT" }), `"typ":"at+jwt"`)), want: verifier.ErrMalformed},

		// Case variants: encoding/json matches names without regard to
		// case (and with Unicode folding), so "EXP" would set or override
		// exp. JWT names are case-sensitive (RFC 7519 section 4).
		{name: "exp in the past and EXP in the future", token: rawClaims(withMember(f.claims(func(c map[string]any) { c["exp"] = later(-time.Hour) }), fmt.Sprintf(`"EXP":%d`, later(time.Hour)))), want: verifier.ErrMalformed},
		{name: "EXP instead of exp", token: rawClaims(withMember(f.claims(func(c map[string]any) { delete(c, "exp") }), fmt.Sprintf(`"EXP":%d`, later(time.Hour)))), want: verifier.ErrMalformed},
		{name: "Sub after sub", token: rawClaims(withMember(claimsJSON, `"Sub":"admin"`)), want: verifier.ErrMalformed},
		{name: "ſub (U+017F long s folds to s)", token: rawClaims(withMember(claimsJSON, `"ſub":"admin"`)), want: verifier.ErrMalformed},
		{name: "AUD after aud", token: rawClaims(withMember(claimsJSON, `"AUD":"`+testAudience+`"`)), want: verifier.ErrMalformed},
		{name: "Tenant after tenant", token: rawClaims(withMember(claimsJSON, `"Tenant":"other"`)), want: verifier.ErrMalformed},
		{name: "TYP at+jwt beside typ JWT", token: rawHdr(withMember(f.edHdr(func(h map[string]any) { h["typ"] = "JWT" }), `"TYP":"at+jwt"`)), want: verifier.ErrMalformed},
		{name: "ALG beside alg", token: rawHdr(withMember(f.edHdr(nil), `"ALG":"none"`)), want: verifier.ErrMalformed},
		{name: "\u212aid (U+212A Kelvin sign folds to k)", token: rawHdr(withMember(f.edHdr(nil), "\"\u212aid\":\"x\"")), want: verifier.ErrMalformed},

		// Invalid UTF-8: encoding/json would turn it into U+FFFD.
		{name: "invalid UTF-8 in sub", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, "\"sub\":\"al\xffice\"", 1)), want: verifier.ErrMalformed},
		{name: "overlong UTF-8 in sub", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, "\"sub\":\"al\xc0\xafice\"", 1)), want: verifier.ErrMalformed},
		{name: "escaped lone surrogate in sub", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, `"sub":"al\ud800ice"`, 1)), want: verifier.ErrMalformed},
		{name: "escaped lone low surrogate in sub", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, `"sub":"al\udc00ice"`, 1)), want: verifier.ErrMalformed},
		{name: "invalid UTF-8 in a member name", token: rawClaims(withMember(claimsJSON, "\"s\xffb\":1")), want: verifier.ErrMalformed},
		{name: "invalid UTF-8 in kid", token: rawHdr(strings.Replace(f.edHdr(nil), k.edKid, k.edKid+"\xff", 1)), want: verifier.ErrMalformed},

		// Non-canonical base64url: one token, one spelling.
		{name: "header padded with =", token: b64([]byte(f.edHdr(nil))) + "=." + parts[1] + "." + parts[2], want: verifier.ErrMalformed},
		{name: "claims padded with =", token: parts[0] + "." + parts[1] + "=." + parts[2], want: verifier.ErrMalformed},
		{name: "signature padded with =", token: valid + "=", want: verifier.ErrMalformed},
		{name: "signature in the standard alphabet", token: parts[0] + "." + parts[1] + ".+" + parts[2][1:], want: verifier.ErrMalformed},
		{name: "header with non-zero trailing bits", token: f.segments(jwt.SigningMethodEdDSA, k.ed, nonCanonical(tb, b64([]byte(withUnusedBits(f.edHdr(nil))))), parts[1]), want: verifier.ErrMalformed},
		{name: "claims with non-zero trailing bits", token: f.segments(jwt.SigningMethodEdDSA, k.ed, parts[0], nonCanonical(tb, b64([]byte(withUnusedBits(claimsJSON))))), want: verifier.ErrMalformed},
		{name: "signature with non-zero trailing bits", token: parts[0] + "." + parts[1] + "." + nonCanonical(tb, parts[2]), want: verifier.ErrMalformed},
		{name: "line feed in the signature", token: parts[0] + "." + parts[1] + "." + parts[2][:40] + "\n" + parts[2][40:], want: verifier.ErrMalformed, noHTTP: true},
		{name: "carriage return in the signature", token: parts[0] + "." + parts[1] + "." + parts[2][:40] + "\r" + parts[2][40:], want: verifier.ErrMalformed, noHTTP: true},
		{name: "space in the token", token: parts[0] + "." + parts[1] + ". " + parts[2], want: verifier.ErrMalformed},
		{name: "tab in the token", token: parts[0] + "." + parts[1] + ".\t" + parts[2], want: verifier.ErrMalformed},

		// Structure and size, bounded before parsing.
		{name: "two parts", token: parts[0] + "." + parts[1], want: verifier.ErrMalformed},
		{name: "four parts", token: valid + "." + parts[2], want: verifier.ErrMalformed},
		{name: "only dots", token: "..", want: verifier.ErrMalformed},
		{name: "JWE compact serialization (five parts)", token: parts[0] + ".." + parts[1] + "." + parts[2] + ".x", want: verifier.ErrMalformed},
		{name: "one byte over MaxTokenSize", token: valid + strings.Repeat("A", verifier.DefaultMaxTokenSize+1-len(valid)), want: verifier.ErrMalformed},
		{name: "1 MiB token", token: strings.Repeat("A", 1<<20) + "." + parts[1] + "." + parts[2], want: verifier.ErrMalformed, noHTTP: true},
	}
}

// runAttacks checks every attack with check, which returns the error of
// one verdict (nil for accepted), and returns how long the table took.
func runAttacks(t *testing.T, list []attack, check func(t *testing.T, a attack) error) time.Duration {
	t.Helper()
	start := time.Now()
	for _, a := range list {
		t.Run(a.name, func(t *testing.T) {
			err := check(t, a)
			if a.want == nil {
				if err != nil {
					t.Fatalf("refused (%v), want accepted", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want refused with %s", a.want.Reason)
			}
			if got := verifier.Reason(err); got != a.want.Reason {
				t.Fatalf("refused with %s (%v), want %s", got, err, a.want.Reason)
			}
		})
	}
	return time.Since(start)
}

// dpopKey is a client's DPoP key.
type dpopKey struct {
	priv ed25519.PrivateKey
	jwk  map[string]string
	jkt  string
}

func newDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	j, err := bus.NewJWK(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{priv: priv, jwk: map[string]string{"kty": j.Kty, "crv": j.Crv, "x": j.X}, jkt: j.Kid}
}

// proof signs a DPoP proof; edit changes header or claims before signing.
func (k *dpopKey) proof(t testing.TB, method, url, accessToken string, edit func(h, c map[string]any)) string {
	t.Helper()
	h := map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": k.jwk}
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
	return k.rawProof(t, string(hb), string(cb))
}

// rawProof signs a DPoP proof whose header and claims are the JSON texts
// given, for members a map cannot hold twice.
func (k *dpopKey) rawProof(t testing.TB, header, claims string) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	sig, err := jwt.SigningMethodEdDSA.Sign(input, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// jwtParseUnverified decodes a token's claims without checking anything.
func jwtParseUnverified(tok string, c *verifier.Claims) (*jwt.Token, error) {
	t, _, err := jwt.NewParser().ParseUnverified(tok, c)
	return t, err
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// benchSidecarWith opens and runs a sidecar with cfg, which gets the test
// issuer and audience and no heartbeats; the returned stop ends it.
func benchSidecarWith(b *testing.B, conn *bus.Conn, cfg Config) (*Sidecar, func()) {
	b.Helper()
	cfg.Verifier = verifier.Config{Issuer: testIssuer, Audience: testAudience}
	cfg.HeartbeatEvery = -1
	sc, err := Open(cfg, conn)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	return sc, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		sc.Close()
	}
}
