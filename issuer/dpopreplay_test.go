package issuer

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
)

// proofKey is a DPoP key of a test client.
type proofKey struct {
	priv ed25519.PrivateKey
	jwk  map[string]string
	jkt  string
}

func newProofKey(t testing.TB) *proofKey {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	j, err := bus.NewJWK(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &proofKey{priv: priv, jwk: map[string]string{"kty": j.Kty, "crv": j.Crv, "x": j.X}, jkt: j.Kid}
}

// proof returns a fresh DPoP proof by k for POST u, issued at iat.
func (k *proofKey) proof(t testing.TB, u string, iat time.Time) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": k.jwk}) + "." +
		enc(map[string]any{"jti": bus.NewID(), "htm": "POST", "htu": u, "iat": iat.Unix()})
	sig, err := jwt.SigningMethodEdDSA.Sign(input, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// tokenRequest posts a token request with an optional DPoP proof and Basic
// credentials, and returns the status and the JSON body.
func tokenRequest(t testing.TB, svc *Service, vals url.Values, proof, id, secret string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", svc.URL()+"/oauth2/token", strings.NewReader(vals.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// TestDPoPReplay_GarbageCannotFillTheCache sends more self-signed proofs
// with garbage refresh tokens than the replay cache holds, then checks
// that a bound session still refreshes and a client still gets tokens with
// fresh proofs, and that a replayed proof is still refused.
func TestDPoPReplay_GarbageCannotFillTheCache(t *testing.T) {
	old := dpopReplayMax
	dpopReplayMax = 64
	t.Cleanup(func() { dpopReplayMax = old })
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), func(s *Service) {
		s.limits = newLimiter(-1, -1, s.now)
	})
	tokenURL := svc.IssuerURL() + "/oauth2/token"
	app := newProofKey(t)
	sess, err := svc.CreateSession(t.Context(), SessionRequest{Subject: "mobile", DPoPJKT: app.jkt}, "test")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := svc.CreateClient(t.Context(), ClientRequest{Name: "cli", RequireDPoP: true}, "test", "test")
	if err != nil {
		t.Fatal(err)
	}

	for i := range 2 * dpopReplayMax {
		mallory := newProofKey(t)
		code, body := tokenRequest(t, svc, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"hrt_garbage"}},
			mallory.proof(t, tokenURL, time.Now()), "", "")
		if code != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("garbage refresh %d: %d %v, want 400 invalid_grant", i, code, body)
		}
	}

	code, body := tokenRequest(t, svc, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {sess.RefreshToken}},
		app.proof(t, tokenURL, time.Now()), "", "")
	if code != http.StatusOK {
		t.Fatalf("refresh of the bound session after the flood: %d %v, want 200", code, body)
	}
	ccProof := app.proof(t, tokenURL, time.Now())
	cc := url.Values{"grant_type": {"client_credentials"}}
	if code, body := tokenRequest(t, svc, cc, ccProof, cl.ID, cl.Secret); code != http.StatusOK {
		t.Fatalf("client_credentials after the flood: %d %v, want 200", code, body)
	}
	if code, body := tokenRequest(t, svc, cc, ccProof, cl.ID, cl.Secret); code != http.StatusBadRequest ||
		body["error"] != "invalid_dpop_proof" {
		t.Fatalf("client_credentials with a replayed proof: %d %v, want 400 invalid_dpop_proof", code, body)
	}
}

// TestProofCache_FullNeverRefusesOthers fills the cache with one bound
// key's proofs, past its per-key bound and the total, and checks that the
// cache stays within its bounds, another key's fresh proof is accepted,
// a replay is refused, and a forgotten proof of the busy key is refused
// (below its floor), not accepted again; a key past its bound with proofs
// all of one instant gets its own excess refused.
func TestProofCache_FullNeverRefusesOthers(t *testing.T) {
	now := time.Unix(1795430832, 0)
	c := newProofCache(100, 40)
	proof := func(jkt string, i int, at time.Time) *verifier.DPoPProof {
		return &verifier.DPoPProof{JKT: jkt, ID: fmt.Sprintf("%s-%d", jkt, i), At: at}
	}
	first := proof("busy", 0, now.Add(-time.Second))
	if err := c.record(first, now); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 500; i++ {
		if err := c.record(proof("busy", i, now.Add(-time.Minute+time.Duration(i)*100*time.Millisecond)), now); err != nil {
			t.Fatalf("busy key's proof %d: %v", i, err)
		}
	}
	for i := range 3 { // other keys fill the rest of the total
		for j := range 25 {
			if err := c.record(proof(fmt.Sprint("k", i), j, now), now); err != nil {
				t.Fatalf("key k%d proof %d: %v", i, j, err)
			}
		}
	}
	if c.total > 100 || len(c.keys["busy"].seen) > 40 {
		t.Fatalf("%d proofs remembered, %d of the busy key; want at most 100 and 40", c.total, len(c.keys["busy"].seen))
	}
	honest := proof("honest", 0, now)
	if err := c.record(honest, now); err != nil {
		t.Fatalf("a fresh key's proof with the cache full: %v", err)
	}
	if err := c.record(honest, now); err != errProofReplayed {
		t.Fatalf("replay: %v, want %v", err, errProofReplayed)
	}
	if err := c.record(first, now); err == nil {
		t.Fatal("a forgotten proof was accepted again")
	}
	c2 := newProofCache(1000, 40)
	for i := range 41 { // past the bound of proofs by one key, in one instant
		err := c2.record(proof("burst", i, now), now)
		if i < 40 && err != nil || i == 40 && err != errProofBurst {
			t.Fatalf("proof %d of a burst: %v", i, err)
		}
	}
	if err := c2.record(proof("other", 0, now), now); err != nil {
		t.Fatalf("another key's proof after a burst: %v", err)
	}
	now = now.Add(dpopProofWindow + 2*time.Second)
	c.record(proof("later", 0, now), now)
	if c.total != 1 || len(c.keys) != 1 {
		t.Fatalf("after every window ended: %d proofs of %d keys remembered, want 1 of 1", c.total, len(c.keys))
	}
}
