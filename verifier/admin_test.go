package verifier

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestProxy_OwnEndpointsOffTheAppListener: in proxy mode the application's
// listener is the application's: /v1/status, /metrics, /v1/verify,
// /healthz and /readyz there are the upstream's paths (behind the token
// check), and the sidecar's own endpoints, which tell the upstream URL,
// event keys and denylist size, answer only on the admin listener.
func TestProxy_OwnEndpointsOffTheAppListener(t *testing.T) {
	f, up := newProxyFixture(t)
	tok := f.edToken(t, baseClaims(time.Now()))
	own := []string{"/v1/status", "/metrics", "/v1/verify", "/healthz", "/readyz"}
	for _, path := range own {
		before := up.calls.Load()
		if resp, body := get(t, f.sc.URL()+path, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a token on the app's listener = %d %.100s, want 401 (an upstream path)", path, resp.StatusCode, body)
		}
		resp, body := get(t, f.sc.URL()+path, tok)
		var echo struct{ Path string }
		if resp.StatusCode != 200 || json.Unmarshal(body, &echo) != nil || echo.Path != path || up.calls.Load() != before+1 {
			t.Errorf("GET %s with a token on the app's listener = %d %.100s, want the upstream's answer", path, resp.StatusCode, body)
		}
	}
	if f.sc.AdminURL() == "" || f.sc.AdminURL() == f.sc.URL() {
		t.Fatalf("admin URL %q, app URL %q: want a listener of its own", f.sc.AdminURL(), f.sc.URL())
	}
	before := up.calls.Load()
	for _, path := range []string{"/v1/status", "/healthz", "/readyz", "/metrics"} {
		resp, body := get(t, f.sc.AdminURL()+path, "")
		if resp.StatusCode != 200 && (path != "/metrics" || resp.StatusCode != 404) { // no exporter configured here
			t.Errorf("GET %s on the admin listener = %d %.100s, want the sidecar's answer", path, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, f.sc.AdminURL()+"/v1/verify", tok); resp.StatusCode != 200 || resp.Header.Get(HeaderSubject) != "alice" {
		t.Errorf("verify on the admin listener = %d", resp.StatusCode)
	}
	if up.calls.Load() != before {
		t.Error("a request to the admin listener reached the upstream")
	}
}
