package sidecar

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/verifier"
)

// boundToken returns a token bound to key k (cnf.jkt) and the claims it
// carries.
func (f *fixture) boundToken(t *testing.T, k *dpopKey) string {
	t.Helper()
	c := baseClaims(time.Now().Add(-time.Second))
	c["cnf"] = map[string]string{"jkt": k.JKT}
	return f.EdToken(t, c)
}

// dpopDo sends method url with a DPoP-bound token, its proof and the extra
// headers, and returns the status and the WWW-Authenticate challenge.
func dpopDo(t *testing.T, method, url, tok, proof string, extra map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "DPoP "+tok)
	req.Header.Set(verifier.HeaderDPoP, proof)
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// forgedTarget are the headers a client sends to pass off a request as
// another: the method, URI, host and scheme the proof names.
func forgedTarget(method, host, scheme, uri string) map[string]string {
	return map[string]string{
		"X-Forwarded-Method": method, "X-Original-Method": method,
		"X-Forwarded-Uri": uri, "X-Original-URI": uri,
		"X-Forwarded-Host": host, "X-Forwarded-Proto": scheme,
	}
}

// TestDPoP_ProxyModeChecksTheRequestItself: in proxy mode a DPoP proof must
// name the method and URL of the request the proxy forwards; headers that
// claim another method or URL, even from a loopback peer, change nothing.
func TestDPoP_ProxyModeChecksTheRequestItself(t *testing.T) {
	f, up := newProxyFixture(t)
	k := newDPoPKey(t)
	tok := f.boundToken(t, k)
	base := f.sc.URL()

	t.Run("proof for a GET elsewhere, sent as a DELETE", func(t *testing.T) {
		before := up.calls.Load()
		proof := k.Proof(t, "GET", base+"/public/readonly", tok, nil)
		code, wa := dpopDo(t, "DELETE", base+"/admin/users/42", tok, proof, forgedTarget("GET", strings.TrimPrefix(base, "http://"), "http", "/public/readonly"))
		if code != http.StatusUnauthorized || !strings.Contains(wa, "invalid_dpop_proof") || up.calls.Load() != before {
			t.Fatalf("DELETE with a proof for GET /public/readonly: %d %q (upstream calls %d→%d), want 401 invalid_dpop_proof", code, wa, before, up.calls.Load())
		}
	})
	t.Run("proof for another site", func(t *testing.T) {
		before := up.calls.Load()
		proof := k.Proof(t, "POST", "https://victim.example/x", tok, nil)
		code, wa := dpopDo(t, "POST", base+"/transfer", tok, proof, forgedTarget("POST", "victim.example", "https", "/x"))
		if code != http.StatusUnauthorized || !strings.Contains(wa, "invalid_dpop_proof") || up.calls.Load() != before {
			t.Fatalf("POST /transfer with a proof for https://victim.example/x: %d %q, want 401 invalid_dpop_proof", code, wa)
		}
	})
	t.Run("proof for the request", func(t *testing.T) {
		proof := k.Proof(t, "DELETE", base+"/admin/users/42", tok, nil)
		if code, wa := dpopDo(t, "DELETE", base+"/admin/users/42", tok, proof, nil); code != http.StatusOK {
			t.Fatalf("honest DELETE: %d %q, want 200", code, wa)
		}
	})
}

// TestDPoP_ForwardAuthTrustsOnlyNamedProxies: /v1/verify reads the original
// request's method and URL from forward-auth headers only when its peer is
// one of Config.TrustedProxies (loopback by default); from anyone else it
// checks the proof against the /v1/verify request itself.
func TestDPoP_ForwardAuthTrustsOnlyNamedProxies(t *testing.T) {
	f := newFixture(t)
	k := newDPoPKey(t)
	tok := f.boundToken(t, k)
	forwarded := forgedTarget("DELETE", "app.example", "https", "/admin/users/42")
	const original = "https://app.example/admin/users/42"

	t.Run("loopback by default", func(t *testing.T) {
		if code, wa := dpopDo(t, "GET", f.sc.URL()+"/v1/verify", tok, k.Proof(t, "DELETE", original, tok, nil), forwarded); code != http.StatusOK {
			t.Fatalf("forwarded request from loopback: %d %q, want 200", code, wa)
		}
	})
	for name, trusted := range map[string][]netip.Prefix{
		"none":            {},
		"another network": {netip.MustParsePrefix("10.0.0.0/8")},
	} {
		t.Run(name, func(t *testing.T) {
			sc, _ := startSidecarWith(t, f.conn, Config{DataDir: t.TempDir(),
				Verifier: verifier.Config{Issuer: testIssuer, Audience: testAudience, TrustedProxies: trusted}})
			waitReady(t, sc)
			if code, _ := dpopDo(t, "GET", sc.URL()+"/v1/verify", tok, k.Proof(t, "DELETE", original, tok, nil), forwarded); code != http.StatusUnauthorized {
				t.Fatalf("forwarded headers from an untrusted peer believed: %d, want 401", code)
			}
			if code, wa := dpopDo(t, "GET", sc.URL()+"/v1/verify", tok, k.Proof(t, "GET", sc.URL()+"/v1/verify", tok, nil), forwarded); code != http.StatusOK {
				t.Fatalf("proof for the /v1/verify request itself: %d %q, want 200", code, wa)
			}
		})
	}
}
