package issuer_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestIntrospection_AgreesWithSidecar runs the bad-input set (and good and
// revoked tokens) through RFC 7662 introspection and the sidecar's
// /v1/verify: both must reach the same verdict for the same reason, but
// for the audience, which introspection leaves to the resource server.
func TestIntrospection_AgreesWithSidecar(t *testing.T) {
	s := bustest.RunServer(t)
	var skew atomic.Int64 // how far the issuer's clock is behind
	conn := bustest.Connect(t, s)
	svc, err := issuer.Open(t.Context(), issuer.Config{
		EventKeyFile: bustest.EventKeyFile(t),
		DataDir:      t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet, IssuerURL: "https://issuer.test",
		Now: func() time.Time { return time.Now().Add(-time.Duration(skew.Load())) },
	}, conn)
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, svc.Run, func() { svc.Close() })
	// Another issuer on the same bus, minting for another audience.
	other, err := issuer.Open(t.Context(), issuer.Config{
		EventKeyFile: bustest.EventKeyFile(t),
		DataDir:      t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet, IssuerURL: "https://issuer.test",
		Audience: "another-service",
	}, bustest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, other.Run, func() { other.Close() })
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)

	good := createSession(t, svc, issuer.SessionRequest{Subject: "agree"}).AccessToken
	revoked := createSession(t, svc, issuer.SessionRequest{Subject: "agree"})
	revoke(t, svc, "session", revoked.SessionID)
	skew.Store(int64(time.Hour))
	expired := createSession(t, svc, issuer.SessionRequest{Subject: "agree"}).AccessToken
	skew.Store(0)
	wrongAud := createSession(t, other, issuer.SessionRequest{Subject: "agree"}).AccessToken

	enc := base64.RawURLEncoding
	seg := func(v any) string {
		b, _ := json.Marshal(v)
		return enc.EncodeToString(b)
	}
	var claims map[string]any
	parts := strings.Split(good, ".")
	b, _ := enc.DecodeString(parts[1])
	json.Unmarshal(b, &claims)
	kid := headerKid(t, good)
	kv, err := conn.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(t.Context(), kid)
	if err != nil {
		t.Fatal(err)
	}
	var jwk bus.JWK
	json.Unmarshal(entry.Value(), &jwk)
	pub, _ := enc.DecodeString(jwk.X)
	hsInput := seg(map[string]string{"alg": "HS256", "typ": "at+jwt", "kid": kid}) + "." + parts[1]
	mac := hmac.New(sha256.New, pub)
	mac.Write([]byte(hsInput))

	tokens := map[string]string{
		"good":               good,
		"revoked":            revoked.AccessToken,
		"expired":            expired,
		"wrong audience":     wrongAud,
		"malformed":          "not.a.token",
		"garbage":            "garbage",
		"alg none":           seg(map[string]string{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + parts[1] + ".",
		"hs256 with pub key": hsInput + "." + enc.EncodeToString(mac.Sum(nil)),
		"unknown kid":        seg(map[string]string{"alg": "EdDSA", "typ": "at+jwt", "kid": "nope"}) + "." + parts[1] + "." + parts[2],
		"tampered":           parts[0] + "." + seg(map[string]any{"sub": "mallory", "exp": claims["exp"]}) + "." + parts[2],
		"wrong typ":          seg(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": kid}) + "." + parts[1] + "." + parts[2],
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, revoked.AccessToken, 401, "revoked") })
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			code, reason := verify(t, sc, tok)
			in := introspectAt(t, svc, tok)
			if name == "wrong audience" {
				// Introspection judges every token the issuer signed,
				// whatever its audience, and names the audience: its
				// check belongs to the resource server, as the sidecar's.
				if !in.Active || len(in.Aud) != 1 || in.Aud[0] != "another-service" || code != 401 || reason != "wrong_audience" {
					t.Fatalf("introspection active=%v aud=%v, sidecar %d %q; want active for another-service, and wrong_audience",
						in.Active, in.Aud, code, reason)
				}
				return
			}
			if in.Active != (code == 200) || (!in.Active && in.Reason != reason) {
				t.Fatalf("introspection active=%v reason=%q, sidecar %d %q", in.Active, in.Reason, code, reason)
			}
			if (name == "good") != in.Active {
				t.Fatalf("active = %v for the %s token", in.Active, name)
			}
		})
	}
}
