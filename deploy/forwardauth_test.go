package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// targetHeaders are the headers the verifier reads, from a trusted proxy,
// for the original request's method, URI, host and scheme (DPoP htm and
// htu). A forward-auth example must set every one of them or keep the
// client's out of the verifier's request.
var targetHeaders = []string{"x-forwarded-method", "x-original-method", "x-forwarded-uri", "x-original-uri", "x-forwarded-host", "x-forwarded-proto"}

// TestTraefik_ForwardAuthHeaders: the Traefik example passes the verifier
// only the client's Authorization and DPoP headers and lets Traefik set
// X-Forwarded-* from the request it received (trustForwardHeader false), so
// a client cannot name another method or URL for its DPoP proof.
func TestTraefik_ForwardAuthHeaders(t *testing.T) {
	var dyn struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth *struct {
					Address             string   `json:"address"`
					AuthRequestHeaders  []string `json:"authRequestHeaders"`
					TrustForwardHeader  *bool    `json:"trustForwardHeader"`
					AuthResponseHeaders []string `json:"authResponseHeaders"`
				} `json:"forwardAuth"`
			} `json:"middlewares"`
		} `json:"http"`
	}
	readYAML(t, "traefik/dynamic.yml", &dyn)
	fa := dyn.HTTP.Middlewares["herald"].ForwardAuth
	if fa == nil {
		t.Fatal("no forwardAuth middleware named herald")
	}
	if fa.TrustForwardHeader == nil || *fa.TrustForwardHeader {
		t.Error("trustForwardHeader must be set to false: Traefik then sets X-Forwarded-Method/-Uri/-Host/-Proto itself")
	}
	lower := make([]string, len(fa.AuthRequestHeaders))
	for i, h := range fa.AuthRequestHeaders {
		lower[i] = strings.ToLower(h)
	}
	slices.Sort(lower)
	if !slices.Equal(lower, []string{"authorization", "dpop"}) {
		t.Errorf("authRequestHeaders = %q, want exactly Authorization and DPoP (no client X-Forwarded-*/X-Original-*)", fa.AuthRequestHeaders)
	}
	var static struct {
		EntryPoints map[string]struct {
			ForwardedHeaders *struct {
				Insecure bool `json:"insecure"`
			} `json:"forwardedHeaders"`
		} `json:"entryPoints"`
	}
	readYAML(t, "traefik/traefik.yml", &static)
	for name, ep := range static.EntryPoints {
		if ep.ForwardedHeaders != nil && ep.ForwardedHeaders.Insecure {
			t.Errorf("entry point %s trusts every client's X-Forwarded-* (forwardedHeaders.insecure)", name)
		}
	}
}

// TestEnvoy_ExtAuthzHeaders: the Envoy example lets only the client's
// Authorization and DPoP headers through to the verifier and sets each
// header the verifier reads for the original request from what Envoy
// received.
func TestEnvoy_ExtAuthzHeaders(t *testing.T) {
	var cfg map[string]any
	readYAML(t, "envoy/envoy.yaml", &cfg)
	var svc map[string]any
	walk(cfg, func(m map[string]any) {
		if m["name"] == "envoy.filters.http.ext_authz" {
			svc = dig(m, "typed_config", "http_service")
		}
	})
	if svc == nil {
		t.Fatal("no ext_authz filter with an http_service")
	}
	req := dig(svc, "authorization_request")
	var allowed []string
	for _, p := range list(dig(req, "allowed_headers")["patterns"]) {
		m, _ := p.(map[string]any)
		exact, ok := m["exact"].(string)
		if len(m) != 1 || !ok {
			t.Errorf("allowed_headers pattern %v: want only exact names (a prefix or regex could let X-Forwarded-* through)", m)
			continue
		}
		allowed = append(allowed, strings.ToLower(exact))
	}
	slices.Sort(allowed)
	if !slices.Equal(allowed, []string{"authorization", "dpop"}) {
		t.Errorf("allowed_headers = %q, want exactly authorization and dpop", allowed)
	}
	want := map[string]string{
		"x-forwarded-method": "%REQ(:METHOD)%", "x-original-method": "%REQ(:METHOD)%",
		"x-forwarded-uri": "%REQ(:PATH)%", "x-original-uri": "%REQ(:PATH)%",
		"x-forwarded-host": "%REQ(:AUTHORITY)%", "x-forwarded-proto": "%REQ(:SCHEME)%",
	}
	got := map[string]string{}
	for _, h := range list(req["headers_to_add"]) {
		m, _ := h.(map[string]any)
		k, _ := m["key"].(string)
		v, _ := m["value"].(string)
		got[strings.ToLower(k)] = v
	}
	for _, h := range targetHeaders {
		if got[h] != want[h] {
			t.Errorf("headers_to_add %s = %q, want %q", h, got[h], want[h])
		}
	}
}

// TestNginx_AuthRequestHeaders: the nginx example sets, on the auth
// subrequest, every header the verifier reads for the original request
// (verifier/nginx_test.go runs it against forged ones with a real nginx).
func TestNginx_AuthRequestHeaders(t *testing.T) {
	data, err := os.ReadFile("nginx/herald.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(data)
	start := strings.Index(conf, "location = /_herald/verify {")
	end := strings.Index(conf[max(start, 0):], "}")
	if start < 0 || end < 0 {
		t.Fatal("no location = /_herald/verify block")
	}
	block := strings.ToLower(conf[start : start+end])
	for _, h := range targetHeaders {
		if !strings.Contains(block, "proxy_set_header "+h+" ") {
			t.Errorf("the auth subrequest does not set %s", h)
		}
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// walk calls fn on every object in v, depth first.
func walk(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x)
		for _, e := range x {
			walk(e, fn)
		}
	case []any:
		for _, e := range x {
			walk(e, fn)
		}
	}
}

// dig follows keys through nested objects; nil when one is missing.
func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, _ := m[k].(map[string]any)
		if next == nil {
			return nil
		}
		m = next
	}
	return m
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}
