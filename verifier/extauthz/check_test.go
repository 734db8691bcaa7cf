package extauthz_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/extauthz"
	"github.com/heraldsec/herald/verifier/sidecar"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// bearer returns the request headers of a bearer token.
func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

// TestCheck_Admitted: a valid token is answered OK with its identity as
// headers for the upstream request and its claims as dynamic metadata; an
// identity header the token has no claim for is removed.
func TestCheck_Admitted(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	tok, c := f.token(t, func(c map[string]any) { delete(c, "tenant") })
	resp := f.check(t, request{method: "GET", scheme: "https", host: "app.example", path: "/orders?id=1", headers: bearer(tok)})
	u := okAnswer(t, resp)
	want := map[string]string{
		"x-herald-issuer": verifiertest.Issuer, "x-herald-subject": "alice", "x-herald-session": c["sid"].(string),
		"x-herald-client": "web", "x-herald-scope": "read write",
	}
	if len(u.set) != len(want) {
		t.Errorf("headers set %v, want %v", u.set, want)
	}
	for k, v := range want {
		if u.set[k] != v {
			t.Errorf("header %s = %q, want %q", k, u.set[k], v)
		}
	}
	for _, name := range []string{"x-herald-tenant", "x-herald-stale"} {
		if !slices.Contains(u.remove, name) {
			t.Errorf("headers_to_remove %q lacks %s (no such claim, not stale)", u.remove, name)
		}
	}
	md := resp.GetDynamicMetadata().GetFields()
	claims := md[extauthz.MetadataClaims].GetStructValue().GetFields()
	if claims["sub"].GetStringValue() != "alice" || claims["jti"].GetStringValue() != c["jti"] || claims["client_id"].GetStringValue() != "web" {
		t.Errorf("metadata claims = %v, want sub alice, jti %s, client_id web", claims, c["jti"])
	}
	if claims["exp"].GetNumberValue() != float64(c["exp"].(int64)) {
		t.Errorf("metadata exp = %v, want %d", claims["exp"], c["exp"])
	}
	if _, ok := claims["tenant"]; ok {
		t.Errorf("metadata has a tenant the token has not: %v", claims["tenant"])
	}
	if st, ok := md[extauthz.MetadataStale]; !ok || st.GetBoolValue() {
		t.Errorf("metadata stale = %v, want false", st)
	}
}

// applyEnvoy returns the headers of the request Envoy forwards after an
// OK answer: the client's, with the answer's headers set (replacing the
// client's of the same name), then its headers_to_remove removed.
func applyEnvoy(client map[string]string, u upstream) map[string]string {
	out := map[string]string{}
	for k, v := range client {
		out[strings.ToLower(k)] = v
	}
	for k, v := range u.set {
		out[k] = v
	}
	for _, k := range u.remove {
		delete(out, strings.ToLower(k))
	}
	return out
}

// TestCheck_ClientHeraldHeadersRemoved: X-Herald-* headers a client sends,
// in any case and with '_' for '-', never reach the application: those
// the verdict sets are overwritten, every other is in headers_to_remove.
func TestCheck_ClientHeraldHeadersRemoved(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	tok, _ := f.token(t, func(c map[string]any) { delete(c, "tenant"); delete(c, "scope") })
	client := map[string]string{
		"authorization":    "Bearer " + tok,
		"x-herald-subject": "mallory", "x-herald-tenant": "evil", "x_herald_scope": "admin",
		"x-herald-role": "root", "x-herald-stale": "false", "x_herald_subject": "mallory",
		"x-request-path": "/keep",
	}
	u := okAnswer(t, f.check(t, request{method: "POST", scheme: "https", host: "app.example", path: "/transfer", headers: client}))
	got := applyEnvoy(client, u)
	for k, v := range got {
		if !verifier.IsHeraldHeader(k) {
			continue
		}
		if u.set[k] != v {
			t.Errorf("upstream header %s = %q: the client's, not the verifier's", k, v)
		}
	}
	if got["x-herald-subject"] != "alice" {
		t.Errorf("upstream x-herald-subject = %q, want alice", got["x-herald-subject"])
	}
	for _, gone := range []string{"x-herald-tenant", "x_herald_scope", "x-herald-role", "x-herald-stale", "x_herald_subject", "x-herald-scope"} {
		if v, ok := got[gone]; ok {
			t.Errorf("upstream keeps %s = %q", gone, v)
		}
	}
	if got["x-request-path"] != "/keep" || got["authorization"] == "" {
		t.Errorf("other headers touched: %v", got)
	}
}

// TestCheck_Revoked: a revoked token is refused with UNAUTHENTICATED and
// the 401, challenge and body /v1/verify answers.
func TestCheck_Revoked(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	tok, c := f.token(t, nil)
	r := request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}
	okAnswer(t, f.check(t, r))
	f.revoke(t, bus.KindSession, c["sid"].(string))
	resp := f.check(t, r)
	d := deniedAnswer(t, resp)
	if d.code != codes.Unauthenticated || d.status != http.StatusUnauthorized {
		t.Fatalf("revoked: %s %d, want UNAUTHENTICATED 401", d.code, d.status)
	}
	if got, want := d.headers.Get("www-authenticate"), `Bearer realm="herald", error="invalid_token", error_description="revoked"`; got != want {
		t.Errorf("www-authenticate = %q, want %q", got, want)
	}
	if d.headers.Get("cache-control") != "no-store" {
		t.Errorf("cache-control = %q, want no-store", d.headers.Get("cache-control"))
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(d.body), &body); err != nil || body["error_description"] != "revoked" {
		t.Errorf("body %q (%v), want error_description revoked", d.body, err)
	}
	if resp.GetDynamicMetadata() != nil {
		t.Errorf("a refusal carries metadata: %v", resp.GetDynamicMetadata())
	}
	if resp.GetStatus().GetMessage() != "revoked" {
		t.Errorf("status message = %q, want the reason", resp.GetStatus().GetMessage())
	}
}

// TestCheck_Malformed: missing and malformed credentials, however Envoy
// encodes them, are refused as /v1/verify refuses them.
func TestCheck_Malformed(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	tok, _ := f.token(t, nil)
	const (
		missing   = `Bearer realm="herald"`
		malformed = `Bearer realm="herald", error="invalid_token", error_description="malformed"`
	)
	raw := func(values ...string) *authv3.CheckRequest {
		req := request{method: "GET", scheme: "https", host: "app.example", path: "/"}.checkRequest()
		hr := req.Attributes.Request.Http
		hr.HeaderMap = &corev3.HeaderMap{}
		for k, v := range hr.Headers {
			hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
		for _, v := range values {
			hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: "authorization", RawValue: []byte(v)})
		}
		hr.Headers = nil // encode_raw_headers: one or the other
		return req
	}
	for name, tc := range map[string]struct {
		req  *authv3.CheckRequest
		want string
	}{
		"no token":            {request{method: "GET", scheme: "https", host: "app.example", path: "/"}.checkRequest(), missing},
		"not a JWT":           {request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer("not-a-jwt")}.checkRequest(), malformed},
		"two joined by Envoy": {request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: map[string]string{"authorization": "Bearer " + tok + ",Bearer " + tok}}.checkRequest(), malformed},
		"two raw headers":     {raw("Bearer "+tok, "Bearer "+tok), malformed},
		"another scheme":      {request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: map[string]string{"authorization": "Basic YTpi"}}.checkRequest(), missing},
		"no HTTP attributes":  {&authv3.CheckRequest{}, missing},
		"network filter (L4)": {&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Address: socketAddress("10.0.0.7", 5000)}}}, missing},
	} {
		t.Run(name, func(t *testing.T) {
			d := deniedAnswer(t, check(t, f.client, tc.req))
			if d.code != codes.Unauthenticated || d.status != http.StatusUnauthorized || d.headers.Get("www-authenticate") != tc.want {
				t.Fatalf("%s %d %q, want UNAUTHENTICATED 401 %q", d.code, d.status, d.headers.Get("www-authenticate"), tc.want)
			}
		})
	}
	t.Run("one raw header", func(t *testing.T) {
		okAnswer(t, check(t, f.client, raw("Bearer "+tok)))
	})
}

// TestCheck_DPoP: a DPoP-bound token needs a proof of its key for the
// method and URL of the request Envoy describes (scheme, host and path,
// the query not compared), used once.
func TestCheck_DPoP(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	k := verifiertest.NewDPoPKey(t)
	tok, _ := f.token(t, func(c map[string]any) { c["cnf"] = map[string]string{"jkt": k.JKT} })
	req := func(method, proof string) request {
		return request{method: method, scheme: "https", host: "app.example", path: "/api/orders?page=2",
			headers: map[string]string{"authorization": "DPoP " + tok, "dpop": proof}}
	}
	const url = "https://app.example/api/orders"
	good := k.Proof(t, "DELETE", url, tok, nil)
	okAnswer(t, f.check(t, req("DELETE", good)))

	for name, tc := range map[string]struct {
		r    request
		want string
	}{
		"proof replayed":           {req("DELETE", good), "invalid_dpop_proof"},
		"proof for another method": {req("DELETE", k.Proof(t, "GET", url, tok, nil)), "invalid_dpop_proof"},
		"proof for another host":   {req("DELETE", k.Proof(t, "DELETE", "https://other.example/api/orders", tok, nil)), "invalid_dpop_proof"},
		"proof for another path":   {req("DELETE", k.Proof(t, "DELETE", "https://app.example/api/admin", tok, nil)), "invalid_dpop_proof"},
		"proof for plain http":     {req("DELETE", k.Proof(t, "DELETE", "http://app.example/api/orders", tok, nil)), "invalid_dpop_proof"},
		"proof by another key":     {req("DELETE", verifiertest.NewDPoPKey(t).Proof(t, "DELETE", url, tok, nil)), "invalid_dpop_proof"},
		"bearer scheme":            {request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}, "dpop_required"},
	} {
		t.Run(name, func(t *testing.T) {
			d := deniedAnswer(t, f.check(t, tc.r))
			want := `Bearer realm="herald", error="invalid_token", error_description="` + tc.want + `"`
			if d.code != codes.Unauthenticated || d.status != http.StatusUnauthorized || d.headers.Get("www-authenticate") != want {
				t.Fatalf("%s %d %q, want UNAUTHENTICATED 401 %q", d.code, d.status, d.headers.Get("www-authenticate"), want)
			}
		})
	}
	t.Run("query differs", func(t *testing.T) {
		okAnswer(t, f.check(t, req("GET", k.Proof(t, "GET", url+"?page=3", tok, nil))))
	})
}

// TestCheck_DPoPUntrustedPeer: the request Envoy describes is believed
// only from a peer in the verifier's trusted proxies, as /v1/verify's
// forward-auth headers are: from another, a bound token is refused,
// proof or not, and an unbound one is admitted.
func TestCheck_DPoPUntrustedPeer(t *testing.T) {
	f := newFixture(t, sidecar.Config{Verifier: verifier.Config{Issuer: verifiertest.Issuer, Audience: verifiertest.Audience,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}})
	k := verifiertest.NewDPoPKey(t)
	tok, _ := f.token(t, func(c map[string]any) { c["cnf"] = map[string]string{"jkt": k.JKT} })
	const url = "https://app.example/api/orders"
	d := deniedAnswer(t, f.check(t, request{method: "GET", scheme: "https", host: "app.example", path: "/api/orders",
		headers: map[string]string{"authorization": "DPoP " + tok, "dpop": k.Proof(t, "GET", url, tok, nil)}}))
	if d.code != codes.Unauthenticated || !strings.Contains(d.headers.Get("www-authenticate"), "invalid_dpop_proof") {
		t.Fatalf("bound token from an untrusted peer: %s %q, want UNAUTHENTICATED invalid_dpop_proof", d.code, d.headers.Get("www-authenticate"))
	}
	plain, _ := f.token(t, nil)
	okAnswer(t, f.check(t, request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(plain)}))
}

// TestCheck_MalformedTarget: attributes that cannot make an absolute
// http(s) URL leave the URL unknown, and a bound token is refused.
func TestCheck_MalformedTarget(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	k := verifiertest.NewDPoPKey(t)
	tok, _ := f.token(t, func(c map[string]any) { c["cnf"] = map[string]string{"jkt": k.JKT} })
	for name, r := range map[string]request{
		"host with a path":   {method: "GET", scheme: "https", host: "app.example/api", path: "/orders"},
		"host with userinfo": {method: "GET", scheme: "https", host: "evil@app.example", path: "/api/orders"},
		"scheme ftp":         {method: "GET", scheme: "ftp", host: "app.example", path: "/api/orders"},
		"path not absolute":  {method: "GET", scheme: "https", host: "app.example", path: "api/orders"},
	} {
		t.Run(name, func(t *testing.T) {
			proof := k.Proof(t, "GET", r.scheme+"://"+r.host+r.path, tok, nil)
			r.headers = map[string]string{"authorization": "DPoP " + tok, "dpop": proof}
			d := deniedAnswer(t, f.check(t, r))
			if d.code != codes.Unauthenticated || !strings.Contains(d.headers.Get("www-authenticate"), "invalid_dpop_proof") {
				t.Fatalf("%s %q, want UNAUTHENTICATED invalid_dpop_proof", d.code, d.headers.Get("www-authenticate"))
			}
		})
	}
}

// TestCheck_ManyHeraldHeaders: a request full of X-Herald-* headers,
// repeated in Envoy's raw header list, has each removed, once.
func TestCheck_ManyHeraldHeaders(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	tok, _ := f.token(t, nil)
	req := request{method: "GET", scheme: "https", host: "app.example", path: "/"}.checkRequest()
	hr := req.Attributes.Request.Http
	hr.Headers = nil
	hr.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "authorization", RawValue: []byte("Bearer " + tok)}}}
	const n = 2000
	for i := range n {
		for range 2 {
			hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: fmt.Sprintf("x-herald-extra-%d", i), RawValue: []byte("x")})
		}
	}
	u := okAnswer(t, check(t, f.client, req))
	seen := map[string]int{}
	for _, name := range u.remove {
		seen[name]++
	}
	for i := range n {
		if name := fmt.Sprintf("x-herald-extra-%d", i); seen[name] != 1 {
			t.Fatalf("%s removed %d times, want once", name, seen[name])
		}
	}
	if len(u.remove) != n+1 { // and x-herald-stale
		t.Errorf("%d headers removed, want %d", len(u.remove), n+1)
	}
}
