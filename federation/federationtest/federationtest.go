// Package federationtest runs an OpenID provider for tests: a discovery
// document and a key set of one RSA key on an httptest server, and the
// access tokens, back-channel logout tokens and Security Event Tokens
// that key signs. Tests against a real provider use oidc-provider
// (cmd/herald); this one is for what the tests sign themselves.
package federationtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
)

// IdP is an OpenID provider standing in for Keycloak or Okta. Its issuer
// is its server's URL.
type IdP struct {
	*httptest.Server
	// Key signs everything the provider issues, under Kid.
	Key *rsa.PrivateKey
	Kid string
	// Audience is the aud of its access tokens; default "herald".
	Audience string
}

// NewIdP starts a provider that serves its discovery document and key
// set until the test ends.
func NewIdP(tb testing.TB) *IdP {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	idp := &IdP{Key: key, Kid: "idp-key-1", Audience: "herald"}
	jwk, err := bus.NewJWK(&key.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	idp.Server = httptest.NewServer(mux)
	tb.Cleanup(idp.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": idp.URL, "jwks_uri": idp.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		k := jwk
		k.Kid = idp.Kid
		json.NewEncoder(w).Encode(map[string]any{"keys": []bus.JWK{k}})
	})
	return idp
}

// Sign returns claims signed with RS256 by the provider's key, with typ.
func (p *IdP) Sign(tb testing.TB, typ string, claims jwt.MapClaims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = p.Kid
	tok.Header["typ"] = typ
	s, err := tok.SignedString(p.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// AccessToken returns an access token of the provider for sub in session
// sid, for p.Audience, valid five minutes.
func (p *IdP) AccessToken(tb testing.TB, sub, sid string) string {
	tb.Helper()
	now := time.Now()
	return p.Sign(tb, "JWT", jwt.MapClaims{"iss": p.URL, "sub": sub, "sid": sid, "aud": p.Audience,
		"azp": "web", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": bus.NewID()})
}

// LogoutToken returns a back-channel logout token of the provider for
// Herald (aud "herald"), after edit changed its claims (sid or sub).
func (p *IdP) LogoutToken(tb testing.TB, edit func(jwt.MapClaims)) string {
	tb.Helper()
	c := jwt.MapClaims{"iss": p.URL, "aud": "herald", "iat": time.Now().Unix(), "jti": bus.NewID(),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	if edit != nil {
		edit(c)
	}
	return p.Sign(tb, "logout+jwt", c)
}

// SET returns a Security Event Token of the provider for Herald with one
// event about subject (its sub_id), after edit changed its claims.
func (p *IdP) SET(tb testing.TB, event string, subject map[string]any, edit func(jwt.MapClaims)) string {
	tb.Helper()
	c := jwt.MapClaims{"iss": p.URL, "aud": "herald", "iat": time.Now().Unix(), "jti": bus.NewID(),
		"sub_id": subject, "events": map[string]any{event: map[string]any{"event_timestamp": time.Now().Unix()}}}
	if edit != nil {
		edit(c)
	}
	return p.Sign(tb, "secevent+jwt", c)
}
