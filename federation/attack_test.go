package federation

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAttack_DiscoveryMembersByExactName: a discovery document's issuer
// and jwks_uri are its members of exactly those names. A document whose
// issuer names another issuer is refused even when a member of another
// case ("ISSUER", "Issuer") names the configured one, and a jwks_uri of
// another case does not stand in for a missing jwks_uri.
func TestAttack_DiscoveryMembersByExactName(t *testing.T) {
	var docs map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutSuffix(r.URL.Path, wellKnownOIDC)
		if d, found := docs[name]; ok && found {
			_, _ = w.Write([]byte(strings.ReplaceAll(d, "$URL", "http://"+r.Host)))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	docs = map[string]string{
		"/ok":          `{"issuer":"$URL/ok","jwks_uri":"$URL/jwks"}`,
		"/upper":       `{"issuer":"https://other.example","ISSUER":"$URL/upper","jwks_uri":"$URL/jwks"}`,
		"/title":       `{"Issuer":"$URL/title","jwks_uri":"$URL/jwks"}`,
		"/jwks-case":   `{"issuer":"$URL/jwks-case","JWKS_URI":"$URL/jwks"}`,
		"/jwks-shadow": `{"issuer":"$URL/jwks-shadow","jwks_uri":"$URL/jwks","Jwks_Uri":"https://attacker.example/jwks"}`,
	}
	f := testFetcher()
	ctx := context.Background()
	if uri, err := f.discover(ctx, srv.URL+"/ok"); err != nil || uri != srv.URL+"/jwks" {
		t.Fatalf("control: %q, %v", uri, err)
	}
	for _, path := range []string{"/upper", "/title", "/jwks-case"} {
		if uri, err := f.discover(ctx, srv.URL+path); err == nil {
			t.Errorf("%s: accepted, jwks_uri %q", path, uri)
		}
	}
	if uri, err := f.discover(ctx, srv.URL+"/jwks-shadow"); err != nil || uri != srv.URL+"/jwks" {
		t.Errorf("/jwks-shadow: %q, %v; want the jwks_uri member's own value", uri, err)
	}
}
