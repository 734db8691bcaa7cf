package sidecar

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/verifier"
)

// spoofedVariants are identity headers a client sends under names an
// application may read as Herald's: CGI, PHP, WSGI and some frameworks
// turn X_Herald_Tenant and X-Herald_Tenant into the same variable as
// X-Herald-Tenant (HTTP_X_HERALD_TENANT). The keys are written as sent.
var spoofedVariants = map[string]string{
	"X_Herald_Tenant":  "evil",
	"x_herald_subject": "mallory",
	"X-Herald_Scope":   "admin",
	"X_Herald-Client":  "evil",
	"X_HERALD_STALE":   "0",
}

// testUnderscoreVariants: behind the proxy, no header the client sent
// under a variant of an X-Herald-* name (underscores for dashes, in any
// case) reaches the application, also for a claim the token lacks, where
// the verifier's answer has no header that would take its place.
func testUnderscoreVariants(t *testing.T, start startProxy) {
	f := newFixture(t)
	appAddr, _ := echoApp(t)
	base := start(t, f.sc.Addr().String(), appAddr)
	c := baseClaims(time.Now().Add(-time.Second))
	for _, claim := range []string{"tenant", "client_id", "scope"} {
		delete(c, claim)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+f.EdToken(t, c))
	for name, v := range spoofedVariants {
		req.Header[name] = []string{v} // sent as written, not canonicalised
	}
	seen := admitted[http.Header](t, req)
	want := map[string]string{verifier.HeaderIssuer: testIssuer, verifier.HeaderSubject: "alice", verifier.HeaderSession: c["sid"].(string)}
	for name, vs := range seen {
		if !verifier.IsHeraldHeader(name) {
			continue
		}
		got := strings.Join(vs, ",")
		if name == http.CanonicalHeaderKey(name) && (got == want[name] || got == "") {
			continue // the verifier's, or empty for a claim the token lacks
		}
		t.Errorf("app saw %s = %q, which the client sent", name, vs)
	}
}

// TestNginx_UnderscoreVariants: nginx drops header names with
// underscores (underscores_in_headers off, the default the example
// keeps), so none reaches the application.
func TestNginx_UnderscoreVariants(t *testing.T) { testUnderscoreVariants(t, startNginx) }

// TestCaddy_UnderscoreVariants: the Caddyfile removes every X-Herald-*
// name, with dashes or underscores, before forward_auth.
func TestCaddy_UnderscoreVariants(t *testing.T) { testUnderscoreVariants(t, startCaddy) }

// testDPoPEncodedSlash: behind the proxy, a DPoP proof for /files/a/b
// does not admit a request for /files/a%2Fb, which the proxy passes on as
// written and an application may read as another resource (one segment
// a/b); a proof for /files/a%2Fb does.
func testDPoPEncodedSlash(t *testing.T, start startProxy) {
	f := newFixture(t)
	appAddr, calls := echoApp(t)
	base := start(t, f.sc.Addr().String(), appAddr)
	k := newDPoPKey(t)
	tok := f.boundToken(t, k)
	before := calls.Load()
	code, wa := dpopDo(t, "GET", base+"/files/a%2Fb", tok, k.Proof(t, "GET", base+"/files/a/b", tok, nil), nil)
	if code != http.StatusUnauthorized || !strings.Contains(wa, "invalid_dpop_proof") || calls.Load() != before {
		t.Fatalf("proof for /files/a/b, GET /files/a%%2Fb: %d %q, want 401 invalid_dpop_proof", code, wa)
	}
	if code, wa := dpopDo(t, "GET", base+"/files/a%2Fb", tok, k.Proof(t, "GET", base+"/files/a%2Fb", tok, nil), nil); code != http.StatusOK || calls.Load() != before+1 {
		t.Fatalf("proof for /files/a%%2Fb, GET /files/a%%2Fb: %d %q, want 200", code, wa)
	}
}

// TestNginx_DPoPEncodedSlash: see testDPoPEncodedSlash.
func TestNginx_DPoPEncodedSlash(t *testing.T) { testDPoPEncodedSlash(t, startNginx) }

// TestCaddy_DPoPEncodedSlash: see testDPoPEncodedSlash.
func TestCaddy_DPoPEncodedSlash(t *testing.T) { testDPoPEncodedSlash(t, startCaddy) }

// TestVerify_PathPrefixKeepsThePath: Envoy's HTTP ext_authz asks
// /v1/verify followed by the original request's path as written, and
// follows no redirect: a path with // or dot segments gets the verdict,
// not a redirect to a cleaned path that Envoy would hand the client as a
// refusal.
func TestVerify_PathPrefixKeepsThePath(t *testing.T) {
	f := newFixture(t)
	tok := f.EdToken(t, baseClaims(time.Now().Add(-time.Second)))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/orders", "//orders", "/a//b", "/a/../b", "/./x", "/a/.", "/v1/verify/../../metrics"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.sc.URL()+"/v1/verify"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get(verifier.HeaderSubject) != "alice" {
			t.Errorf("/v1/verify%s: %d (Location %q), subject %q; want 200 for alice", path, resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get(verifier.HeaderSubject))
		}
	}
}

// testConnectionNominated: a client that names identity headers in its
// Connection header (hop-by-hop, which a proxy removes before forwarding)
// does not make the proxy drop the verifier's: the application still sees
// the token's tenant, and a request admitted while stale is still marked.
func testConnectionNominated(t *testing.T, start startProxy) {
	f := newFixture(t)
	appAddr, _ := echoApp(t)
	base := start(t, f.sc.Addr().String(), appAddr)
	c := baseClaims(time.Now().Add(-time.Second))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+f.EdToken(t, c))
	req.Header["Connection"] = []string{"keep-alive", "X-Herald-Tenant, X-Herald-Subject", "x-herald-scope"}
	seen := admitted[http.Header](t, req)
	for h, want := range map[string]string{verifier.HeaderTenant: "acme", verifier.HeaderSubject: "alice", verifier.HeaderScope: "read write"} {
		if got := seen.Get(h); got != want {
			t.Errorf("app saw %s = %q, want %q: the client's Connection header removed the verifier's", h, got, want)
		}
	}
}

// TestNginx_ConnectionNominated: see testConnectionNominated.
func TestNginx_ConnectionNominated(t *testing.T) { testConnectionNominated(t, startNginx) }

// TestCaddy_ConnectionNominated: see testConnectionNominated.
func TestCaddy_ConnectionNominated(t *testing.T) { testConnectionNominated(t, startCaddy) }

// TestProxy_ConnectionNominated: in proxy mode, identity headers the
// client names in Connection still reach the application with the
// token's values (the proxy removes hop-by-hop headers before it sets
// them).
func TestProxy_ConnectionNominated(t *testing.T) {
	f, _ := newProxyFixture(t)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.sc.URL()+"/echo", nil)
	req.Header.Set("Authorization", "Bearer "+f.EdToken(t, baseClaims(time.Now().Add(-time.Second))))
	req.Header.Set("Connection", "X-Herald-Tenant, X-Herald-Subject")
	seen := admitted[struct{ Headers http.Header }](t, req)
	if seen.Headers.Get(verifier.HeaderTenant) != "acme" || seen.Headers.Get(verifier.HeaderSubject) != "alice" {
		t.Errorf("upstream saw tenant %q, subject %q; want acme, alice", seen.Headers.Get(verifier.HeaderTenant), seen.Headers.Get(verifier.HeaderSubject))
	}
}

// testNonASCIIClaims: identity claims in UTF-8 reach the application as
// the token has them, and the client's headers of those names do not
// survive in their place.
func testNonASCIIClaims(t *testing.T, start startProxy) {
	f := newFixture(t)
	appAddr, _ := echoApp(t)
	base := start(t, f.sc.Addr().String(), appAddr)
	c := baseClaims(time.Now().Add(-time.Second))
	c["sub"], c["tenant"] = "José Ñandú", "bücher-straße"
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+f.EdToken(t, c))
	req.Header.Set(verifier.HeaderSubject, "mallory")
	req.Header.Set(verifier.HeaderTenant, "evil")
	seen := admitted[http.Header](t, req)
	for h, want := range map[string]string{verifier.HeaderSubject: "José Ñandú", verifier.HeaderTenant: "bücher-straße"} {
		if got := seen.Values(h); len(got) != 1 || got[0] != want {
			t.Errorf("app saw %s = %q, want [%q]", h, got, want)
		}
	}
}

// TestNginx_NonASCIIClaims: see testNonASCIIClaims.
func TestNginx_NonASCIIClaims(t *testing.T) { testNonASCIIClaims(t, startNginx) }

// TestCaddy_NonASCIIClaims: see testNonASCIIClaims.
func TestCaddy_NonASCIIClaims(t *testing.T) { testNonASCIIClaims(t, startCaddy) }
