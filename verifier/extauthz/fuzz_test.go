package extauthz

import (
	"net/url"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// FuzzTarget: whatever attributes a caller sends, the URL a DPoP proof is
// checked against is empty or an http(s) URL whose host is the request's
// host and holds no user info, an untrusted caller's request has none, and
// pseudo-headers never pass for headers.
func FuzzTarget(f *testing.F) {
	f.Add("GET", "https", "app.example", "/orders?id=1", "authorization", "Bearer x")
	f.Add("DELETE", "http", "app.example:8080", "//evil.example/x", ":authority", "evil.example")
	f.Add("GET", "HTTPS", "evil@app.example", "/", "x_herald_subject", "mallory")
	f.Add("", "", "", "", ":path", "/admin")
	f.Add("GET", "https", "[::1]:443", "/a#b", "dpop", "p")
	f.Add("GET", "https", "caf%c3%a9.example", "/", "x-herald-tenant", "evil")
	f.Fuzz(func(t *testing.T, method, scheme, host, path, hname, hvalue string) {
		hr := &authv3.AttributeContext_HttpRequest{Method: method, Scheme: scheme, Host: host, Path: path,
			Headers: map[string]string{hname: hvalue}}
		if u := target(hr, false); u.URL != "" || u.Method != "" {
			t.Fatalf("untrusted caller: %q %q, want no method nor URL", u.Method, u.URL)
		}
		tg := target(hr, true)
		for name := range tg.Header {
			if strings.HasPrefix(name, ":") {
				t.Fatalf("pseudo-header %q among the headers", name)
			}
		}
		if tg.URL == "" {
			return
		}
		u, err := url.Parse(tg.URL)
		if err != nil {
			return // a proof's htu never matches it: refused
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("URL %q: scheme %q", tg.URL, u.Scheme)
		}
		if u.User != nil || u.Host != host {
			t.Fatalf("URL %q: host %q (user %v), want the request's host %q", tg.URL, u.Host, u.User, host)
		}
	})
}
