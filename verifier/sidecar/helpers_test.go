package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
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
