package issuer_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestOpenIDConfiguration checks the OIDC discovery document against the
// issuer's configuration, for each signing algorithm, and that it carries
// every field of the RFC 8414 document unchanged.
func TestOpenIDConfiguration(t *testing.T) {
	for _, alg := range []string{bus.AlgEdDSA, bus.AlgES256} {
		t.Run(alg, func(t *testing.T) {
			// A bus of its own: issuers on one bus share HERALD_KEYS,
			// and the document lists every published key's algorithm.
			s := bustest.RunServer(t)
			svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{
				Algorithm: alg, IssuerURL: "https://" + alg + ".issuer.test"})
			iss := svc.IssuerURL()

			resp, body := get(t, svc.URL()+"/.well-known/openid-configuration")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200: %s", resp.StatusCode, body)
			}
			if got, want := resp.Header.Get("Cache-Control"), "public, max-age=300"; got != want {
				t.Errorf("Cache-Control = %q, want %q", got, want)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			var doc map[string]any
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			want := map[string]any{
				"issuer":                                iss,
				"jwks_uri":                              iss + "/.well-known/jwks.json",
				"token_endpoint":                        iss + "/oauth2/token",
				"revocation_endpoint":                   iss + "/oauth2/revoke",
				"introspection_endpoint":                iss + "/oauth2/introspect",
				"id_token_signing_alg_values_supported": []any{alg},
				"subject_types_supported":               []any{"public"},
				"response_types_supported":              []any{},
			}
			for k, w := range want {
				if got := doc[k]; !reflect.DeepEqual(got, w) {
					t.Errorf("%s = %v, want %v", k, got, w)
				}
			}
			if _, ok := doc["authorization_endpoint"]; ok {
				t.Errorf("authorization_endpoint = %v, want none: the issuer has no authorization endpoint", doc["authorization_endpoint"])
			}

			_, mbody := get(t, svc.URL()+"/.well-known/oauth-authorization-server")
			var meta map[string]any
			if err := json.Unmarshal(mbody, &meta); err != nil {
				t.Fatalf("decode metadata %s: %v", mbody, err)
			}
			for k, v := range meta {
				if got := doc[k]; !reflect.DeepEqual(got, v) {
					t.Errorf("%s = %v, RFC 8414 metadata says %v", k, got, v)
				}
			}
			if got, want := len(doc), len(meta)+2; got != want {
				t.Errorf("%d fields, want %d (the RFC 8414 ones and two): %v", got, want, doc)
			}

			// The algorithms are those of the keys the JWKS publishes.
			_, jbody := get(t, svc.URL()+"/.well-known/jwks.json")
			var jwks struct {
				Keys []struct {
					Alg string `json:"alg"`
				} `json:"keys"`
			}
			if err := json.Unmarshal(jbody, &jwks); err != nil || len(jwks.Keys) == 0 {
				t.Fatalf("jwks %s: %v", jbody, err)
			}
			for _, k := range jwks.Keys {
				if k.Alg != alg {
					t.Errorf("JWKS key alg = %q, discovery says only %q", k.Alg, alg)
				}
			}
		})
	}
}

// TestOpenIDConfiguration_MethodNotAllowed checks that the discovery
// document is read-only.
func TestOpenIDConfiguration_MethodNotAllowed(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if code, body := call(t, m, svc.URL()+"/.well-known/openid-configuration", "", nil); code != http.StatusMethodNotAllowed {
			t.Errorf("%s: status = %d, want 405: %s", m, code, body)
		}
	}
}
