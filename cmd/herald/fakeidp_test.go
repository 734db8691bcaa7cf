package main

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

// fakeIdP is a minimal OpenID provider for tests that drive the binary:
// a discovery document, a key set of one RSA key, and the tokens it
// signs. The real provider tests use oidc-provider.
type fakeIdP struct {
	*httptest.Server
	key *rsa.PrivateKey
}

func newFakeIdP(t *testing.T) *fakeIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp := &fakeIdP{key: key}
	mux := http.NewServeMux()
	idp.Server = httptest.NewServer(mux)
	t.Cleanup(idp.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": idp.URL, "jwks_uri": idp.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		k, err := bus.NewJWK(&idp.key.PublicKey)
		if err != nil {
			t.Error(err)
		}
		k.Kid = "fake-1"
		json.NewEncoder(w).Encode(map[string]any{"keys": []bus.JWK{k}})
	})
	return idp
}

// sign returns claims, with iss, iat and jti filled in, signed by the
// provider as typ.
func (idp *fakeIdP) sign(t *testing.T, typ string, claims jwt.MapClaims) string {
	t.Helper()
	claims["iss"], claims["iat"], claims["jti"] = idp.URL, time.Now().Unix(), bus.NewID()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"], tok.Header["typ"] = "fake-1", typ
	s, err := tok.SignedString(idp.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logoutToken returns a back-channel logout token for session sid.
func (idp *fakeIdP) logoutToken(t *testing.T, sid string) string {
	return idp.sign(t, "logout+jwt", jwt.MapClaims{"aud": "herald", "sid": sid,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})
}

// set returns a CAEP session-revoked SET for session sid.
func (idp *fakeIdP) set(t *testing.T, sid string) string {
	return idp.sign(t, "secevent+jwt", jwt.MapClaims{"aud": "herald",
		"sub_id": map[string]any{"format": "opaque", "id": sid},
		"events": map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{
			"event_timestamp": time.Now().Unix()}}})
}
