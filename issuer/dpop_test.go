package issuer_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// client is a public client's DPoP key.
type dpopClient struct {
	priv ed25519.PrivateKey
	jwk  map[string]string
	jkt  string
}

func newDPoPClient(t *testing.T) *dpopClient {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	j, err := bus.NewJWK(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopClient{priv: priv, jwk: map[string]string{"kty": j.Kty, "crv": j.Crv, "x": j.X}, jkt: j.Kid}
}

// proof returns a fresh DPoP proof for method and URL, bound to the access
// token when one is given.
func (c *dpopClient) proof(t *testing.T, method, u, accessToken string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	claims := map[string]any{"jti": bus.NewID(), "htm": method, "htu": u, "iat": time.Now().Unix()}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	input := enc(map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": c.jwk}) + "." + enc(claims)
	sig, err := jwt.SigningMethodEdDSA.Sign(input, c.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// forwardAuth asks the sidecar as a proxy does for GET https://api.example/orders.
func forwardAuth(t *testing.T, sc *sidecar.Sidecar, scheme, token, proof string) (int, string) {
	req, _ := http.NewRequestWithContext(t.Context(), "GET", sc.URL()+"/v1/verify", nil)
	req.Header.Set("Authorization", scheme+" "+token)
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "api.example")
	req.Header.Set("X-Forwarded-Uri", "/orders")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, reason, _ := strings.Cut(resp.Header.Get("WWW-Authenticate"), `error_description="`)
	return resp.StatusCode, strings.TrimSuffix(reason, `"`)
}

func TestDPoP_BoundTokensNeedTheKey(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	app := newDPoPClient(t)
	const resource = "https://api.example/orders"

	bound := createSession(t, svc, issuer.SessionRequest{Subject: "mobile", DPoPJKT: app.jkt})
	if bound.TokenType != "DPoP" || claimsOf(t, bound.AccessToken).Confirmation == nil {
		t.Fatalf("bound session: token_type %s, cnf %+v", bound.TokenType, claimsOf(t, bound.AccessToken).Confirmation)
	}
	unbound := createSession(t, svc, issuer.SessionRequest{Subject: "web"})

	proof := app.proof(t, "GET", resource, bound.AccessToken)
	thief := newDPoPClient(t)
	tests := []struct {
		name, scheme, token, proof string
		code                       int
		reason                     string
	}{
		{"bound token as bearer", "Bearer", bound.AccessToken, "", 401, "dpop_required"},
		{"bound token without proof", "DPoP", bound.AccessToken, "", 401, "dpop_required"},
		{"proof for another URL", "DPoP", bound.AccessToken, app.proof(t, "GET", "https://api.example/admin", bound.AccessToken), 401, "invalid_dpop_proof"},
		{"proof for another method", "DPoP", bound.AccessToken, app.proof(t, "DELETE", resource, bound.AccessToken), 401, "invalid_dpop_proof"},
		{"proof by another key", "DPoP", bound.AccessToken, thief.proof(t, "GET", resource, bound.AccessToken), 401, "invalid_dpop_proof"},
		{"fresh proof", "DPoP", bound.AccessToken, proof, 200, ""},
		{"replayed proof", "DPoP", bound.AccessToken, proof, 401, "invalid_dpop_proof"},
		{"unbound token as bearer", "Bearer", unbound.AccessToken, "", 200, ""},
	}
	for _, tt := range tests {
		if code, reason := forwardAuth(t, sc, tt.scheme, tt.token, tt.proof); code != tt.code || reason != tt.reason {
			t.Errorf("%s: %d %q, want %d %q", tt.name, code, reason, tt.code, tt.reason)
		}
	}

	// Refreshing a bound session needs a proof by its key (RFC 9449 section 5).
	tokenURL := svc.IssuerURL() + "/oauth2/token"
	refresh := func(proof string) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", svc.URL()+"/oauth2/token",
			strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {bound.RefreshToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, body := refresh(""); code != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("refresh without proof: %d %v", code, body)
	}
	if code, body := refresh(thief.proof(t, "POST", tokenURL, "")); code != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("refresh with the thief's proof: %d %v", code, body)
	}
	code, body := refresh(app.proof(t, "POST", tokenURL, ""))
	if code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("refresh with the key's proof: %d %v", code, body)
	}

	// A client that must use DPoP gets no token without a proof.
	code, raw := call(t, "POST", svc.URL()+"/v1/clients", adminToken, issuer.ClientRequest{Name: "cli", RequireDPoP: true})
	var cl issuer.Client
	if code != 201 || json.Unmarshal(raw, &cl) != nil || !cl.RequireDPoP {
		t.Fatalf("create client: %d %s", code, raw)
	}
	if code, body, _ := form(t, svc.URL()+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, cl.ID, cl.Secret); code != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("client_credentials without proof: %d %v", code, body)
	}
	if code, _ := call(t, "POST", svc.URL()+"/v1/sessions", adminToken, issuer.SessionRequest{Subject: "x", ClientID: cl.ID}); code != 400 {
		t.Fatalf("session for a DPoP-only client without dpop_jkt: %d, want 400", code)
	}
}
