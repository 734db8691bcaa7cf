package deploy

import (
	"strings"
	"testing"

	"github.com/heraldsec/herald/verifier"
)

// identityHeaders are the headers only the verifier may set: the identity
// headers and the stale mark.
var identityHeaders = []string{
	verifier.HeaderIssuer, verifier.HeaderSubject, verifier.HeaderSession, verifier.HeaderClient,
	verifier.HeaderScope, verifier.HeaderTenant, verifier.HeaderStale,
}

// underscoreVariants returns name (X-Herald-Subject) with '_' for either
// dash or both, as a client sends it for an application that reads
// X_Herald_Subject as X-Herald-Subject (CGI, PHP, WSGI).
func underscoreVariants(name string) []string {
	rest := strings.TrimPrefix(name, "X-Herald-")
	var out []string
	for _, a := range []string{"-", "_"} {
		for _, b := range []string{"-", "_"} {
			out = append(out, "X"+a+"Herald"+b+rest)
		}
	}
	return out
}

// TestEnvoy_ClientIdentityHeadersStripped: in front of ext_authz's HTTP
// service, which copies only the names the verifier answers with, Envoy
// removes every identity header a client sent, and refuses requests with
// underscores in header names (Envoy passes them by default) so that no
// X_Herald_Tenant reaches an application that reads it as
// X-Herald-Tenant.
func TestEnvoy_ClientIdentityHeadersStripped(t *testing.T) {
	var cfg map[string]any
	readYAML(t, "envoy/envoy.yaml", &cfg)
	removed := map[string]bool{}
	var hcms int
	walk(cfg, func(m map[string]any) {
		if m["name"] == "envoy.filters.network.http_connection_manager" {
			hcms++
			action, _ := dig(m, "typed_config", "common_http_protocol_options")["headers_with_underscores_action"].(string)
			if action != "REJECT_REQUEST" && action != "DROP_HEADER" {
				t.Errorf("http_connection_manager headers_with_underscores_action %q: Envoy passes X_Herald_* names on (want REJECT_REQUEST)", action)
			}
		}
		if r, ok := m["remove"].(string); ok {
			removed[strings.ToLower(r)] = true
		}
	})
	if hcms == 0 {
		t.Fatal("no http_connection_manager")
	}
	for _, h := range identityHeaders {
		if !removed[strings.ToLower(h)] {
			t.Errorf("the client's %s is not removed before ext_authz", h)
		}
	}
}

// TestTraefik_ClientIdentityHeadersStripped: the Traefik example removes
// every identity header a client sent, also with '_' for '-', which
// Traefik passes on and CGI, PHP and WSGI applications read as the same
// name.
func TestTraefik_ClientIdentityHeadersStripped(t *testing.T) {
	var dyn struct {
		HTTP struct {
			Middlewares map[string]struct {
				Headers *struct {
					CustomRequestHeaders map[string]string `json:"customRequestHeaders"`
				} `json:"headers"`
			} `json:"middlewares"`
			Routers map[string]struct {
				Middlewares []string `json:"middlewares"`
			} `json:"routers"`
		} `json:"http"`
	}
	readYAML(t, "traefik/dynamic.yml", &dyn)
	strip := dyn.HTTP.Middlewares["herald-strip"].Headers
	if strip == nil {
		t.Fatal("no headers middleware named herald-strip")
	}
	for name, r := range dyn.HTTP.Routers {
		if len(r.Middlewares) < 2 || r.Middlewares[0] != "herald-strip" || r.Middlewares[1] != "herald" {
			t.Errorf("router %s middlewares %q: want herald-strip, then herald", name, r.Middlewares)
		}
	}
	// Traefik deletes each name as Go canonicalises it, which is how Go
	// stored the client's.
	got := map[string]bool{}
	for k, v := range strip.CustomRequestHeaders {
		if v == "" {
			got[canonical(k)] = true
		}
	}
	for _, h := range identityHeaders {
		for _, v := range underscoreVariants(h) {
			if !got[canonical(v)] {
				t.Errorf("herald-strip does not remove %s", v)
			}
		}
	}
}

// canonical is Go's canonical form of a header name, which keeps '_'.
func canonical(name string) string {
	b := []byte(strings.ToLower(name))
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		upper = c == '-'
	}
	return string(b)
}
