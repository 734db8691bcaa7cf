package federation

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
)

func testFetcher() *fetcher {
	return &fetcher{client: newHTTPClient(nil), timeout: 5 * time.Second, now: time.Now}
}

func TestParseJWKS(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	keys := []json.RawMessage{
		ecKey(t, "ec", map[string]any{"alg": nil}),             // alg inferred: ES256
		edKey(t, "ed", map[string]any{"alg": nil, "use": nil}), // alg inferred: EdDSA
		rsa2048Key(t, "rsa", map[string]any{"alg": nil}),       // alg inferred: RS256
		rsa2048Key(t, "ps", map[string]any{"alg": "PS256"}),    // alg as stated
		rawKey(t, weak.Public(), "weak", nil),                  // RSA 1024: refused
		ecKey(t, "private", map[string]any{"d": "AAAA"}),       // private member: refused
		ecKey(t, "sym", map[string]any{"k": "AAAA"}),           // symmetric member: refused
		ecKey(t, "p384", map[string]any{"crv": "P-384"}),       // unsupported curve
		ecKey(t, "", nil), // no kid
		ecKey(t, "enc", map[string]any{"use": "enc"}),                   // encryption key: silently left out
		ecKey(t, "ops", map[string]any{"key_ops": []string{"encrypt"}}), // not for verifying: left out
		ecKey(t, "ec", nil),                            // a second "ec": refused
		ecKey(t, "hs", map[string]any{"alg": "HS256"}), // unsupported alg
		json.RawMessage(`"not an object"`),
	}
	body, _ := json.Marshal(map[string]any{"keys": keys})
	ks, err := parseJWKS(body, bus.ExternalAlgorithms())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range ks.keys {
		got = append(got, k.jwk.Kid+":"+k.jwk.Alg)
	}
	if want := "ec:ES256 ed:EdDSA rsa:RS256 ps:PS256"; strings.Join(got, " ") != want {
		t.Errorf("keys = %v, want %s", got, want)
	}
	report := strings.Join(ks.skipped, "\n")
	for _, want := range []string{`"weak"`, `RSA key of 1024 bits`, `"private"`, `private member "d"`, `private member "k"`,
		`"p384"`, `no kid`, `same kid`, `"hs"`, `not a JSON object`} {
		if !strings.Contains(report, want) {
			t.Errorf("skipped does not mention %s:\n%s", want, report)
		}
	}
	if strings.Contains(report, `"enc"`) || strings.Contains(report, `"ops"`) {
		t.Errorf("encryption keys reported:\n%s", report)
	}
	if len(ks.skipped) != 8 {
		t.Errorf("skipped %d, want 8:\n%s", len(ks.skipped), report)
	}

	// Only RS256 accepted: the PS256 key and the EC keys are left out.
	ks, err = parseJWKS(body, []string{bus.AlgRS256})
	if err != nil || len(ks.keys) != 1 || ks.keys[0].jwk.Kid != "rsa" {
		t.Errorf("RS256 only: %v, %v", ks.keys, err)
	}
	// Only PS256: a key without alg is taken as PS256.
	ks, err = parseJWKS(body, []string{bus.AlgPS256})
	if err != nil || len(ks.keys) != 2 || ks.keys[0].jwk.Alg != bus.AlgPS256 {
		t.Errorf("PS256 only: %v, %v", ks.keys, err)
	}
}

func TestParseJWKS_Bounds(t *testing.T) {
	var keys []json.RawMessage
	for i := range MaxKeys + 3 {
		keys = append(keys, edKey(t, fmt.Sprint("k", i), nil))
	}
	body, _ := json.Marshal(map[string]any{"keys": keys})
	ks, err := parseJWKS(body, bus.ExternalAlgorithms())
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.keys) != MaxKeys || len(ks.skipped) != 3 {
		t.Errorf("kept %d, skipped %d; want %d and 3", len(ks.keys), len(ks.skipped), MaxKeys)
	}

	for name, body := range map[string]string{
		"empty":    `{"keys":[]}`,
		"no keys":  `{}`,
		"only bad": `{"keys":[{"kty":"oct","kid":"x","k":"AAAA"}]}`,
		"garbage":  `{"keys":`,
	} {
		if _, err := parseJWKS([]byte(body), bus.ExternalAlgorithms()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCacheLifetime(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		h      http.Header
		want   time.Duration
		cached bool
	}{
		{"none", http.Header{}, 0, false},
		{"max-age", http.Header{"Cache-Control": {"public, max-age=600"}}, 10 * time.Minute, true},
		{"max-age less age", http.Header{"Cache-Control": {"max-age=600"}, "Age": {"100"}}, 500 * time.Second, true},
		{"no-cache", http.Header{"Cache-Control": {"no-cache, max-age=600"}}, 0, true},
		{"no-store", http.Header{"Cache-Control": {"no-store"}}, 0, true},
		{"bad max-age", http.Header{"Cache-Control": {"max-age=soon"}}, 0, true},
		{"expires", http.Header{"Expires": {now.Add(2 * time.Hour).Format(http.TimeFormat)}}, 2 * time.Hour, true},
		{"expires from date", http.Header{"Expires": {now.Add(2 * time.Hour).Format(http.TimeFormat)},
			"Date": {now.Add(time.Hour).Format(http.TimeFormat)}}, time.Hour, true},
		{"max-age over expires", http.Header{"Cache-Control": {"max-age=60"}, "Expires": {now.Add(2 * time.Hour).Format(http.TimeFormat)}}, time.Minute, true},
		{"expires 0", http.Header{"Expires": {"0"}}, 0, true},
		{"expired", http.Header{"Expires": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0, true},
	} {
		got, cached := cacheLifetime(tc.h, now)
		if got != tc.want || cached != tc.cached {
			t.Errorf("%s: %s %v, want %s %v", tc.name, got, cached, tc.want, tc.cached)
		}
	}
}

func TestDiscover(t *testing.T) {
	ctx := context.Background()
	f := testFetcher()

	t.Run("openid", func(t *testing.T) {
		p := newIDP(t, "/realms/a")
		uri, err := f.discover(ctx, p.issuer())
		if err != nil || uri != p.srv.URL+"/jwks" {
			t.Fatalf("discover = %q, %v", uri, err)
		}
	})
	t.Run("RFC 8414 with a path", func(t *testing.T) {
		p := newIDP(t, "/tenant/b")
		p.set(func(p *idp) { p.noOIDC = true })
		uri, err := f.discover(ctx, p.issuer())
		if err != nil || uri != p.srv.URL+"/jwks" {
			t.Fatalf("discover = %q, %v", uri, err)
		}
	})
	t.Run("RFC 8414 without a path", func(t *testing.T) {
		p := newIDP(t, "")
		p.set(func(p *idp) { p.noOIDC = true })
		if uri, err := f.discover(ctx, p.issuer()); err != nil || uri != p.srv.URL+"/jwks" {
			t.Fatalf("discover = %q, %v", uri, err)
		}
	})
	t.Run("issuer mismatch", func(t *testing.T) {
		p := newIDP(t, "/realms/a")
		p.set(func(p *idp) { p.docIssuer = p.issuer() + "/" })
		_, err := f.discover(ctx, p.issuer())
		if err == nil || !strings.Contains(err.Error(), "names issuer") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("down", func(t *testing.T) {
		p := newIDP(t, "")
		p.set(func(p *idp) { p.down = true })
		_, err := f.discover(ctx, p.issuer())
		if err == nil || !strings.Contains(err.Error(), "status 503") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestFetch_RefusedDocuments(t *testing.T) {
	ctx := context.Background()
	f := testFetcher()
	var target *httptest.Server
	target = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": target.URL, "jwks_uri": target.URL + "/jwks"})
	}))
	t.Cleanup(target.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect" + wellKnownOIDC:
			http.Redirect(w, r, target.URL+wellKnownOIDC, http.StatusFound)
		case "/big" + wellKnownOIDC:
			_, _ = w.Write([]byte(`{"issuer":"` + strings.Repeat("x", maxBody) + `"}`))
		case "/plain" + wellKnownOIDC:
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": "http://" + r.Host + "/plain", "jwks_uri": "http://idp.example.com/jwks"})
		case "/nojwks" + wellKnownOIDC:
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": "http://" + r.Host + "/nojwks"})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	for path, want := range map[string]string{
		"/redirect": "redirect to",
		"/big":      "larger than",
		"/plain":    "jwks_uri",
		"/nojwks":   "no jwks_uri",
	} {
		if _, err := f.discover(ctx, srv.URL+path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", path, err, want)
		}
	}
}

func TestSSFConfiguration(t *testing.T) {
	p := newIDP(t, "/ssf")
	uri, err := testFetcher().ssfConfiguration(context.Background(), p.issuer())
	if err != nil || uri != p.srv.URL+"/ssf-jwks" {
		t.Fatalf("ssf configuration = %q, %v", uri, err)
	}
	p.set(func(p *idp) { p.docIssuer = "https://other.example" })
	if _, err := testFetcher().ssfConfiguration(context.Background(), p.issuer()); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("mismatch: err = %v", err)
	}
}

// TestDiscoverTokenEndpoint: the token endpoint is read from the OpenID
// configuration, else from RFC 8414 metadata, and refused when the
// document names another issuer, has none, names one that is neither
// https nor loopback http, or redirects.
func TestDiscoverTokenEndpoint(t *testing.T) {
	var docs map[string]func(iss string) (int, string)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		code, body := h("http://" + r.Host)
		if code/100 == 3 {
			w.Header().Set("Location", body)
		}
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	doc := func(members string) func(string) (int, string) {
		return func(iss string) (int, string) {
			return 200, strings.ReplaceAll(`{"issuer":"ISS",`+members+`}`, "ISS", iss)
		}
	}
	for name, tc := range map[string]struct {
		docs map[string]func(string) (int, string)
		want string // the endpoint, or a part of the error
	}{
		"oidc":     {map[string]func(string) (int, string){wellKnownOIDC: doc(`"token_endpoint":"ISS/oauth2/token"`)}, "/oauth2/token"},
		"rfc 8414": {map[string]func(string) (int, string){wellKnownOAuth: doc(`"token_endpoint":"ISS/token"`)}, "/token"},
		"none":     {map[string]func(string) (int, string){wellKnownOIDC: doc(`"jwks_uri":"ISS/jwks"`)}, "no token_endpoint"},
		"plain":    {map[string]func(string) (int, string){wellKnownOIDC: doc(`"token_endpoint":"http://idp.example/token"`)}, "token_endpoint: "},
		"other iss": {map[string]func(string) (int, string){wellKnownOIDC: func(string) (int, string) {
			return 200, `{"issuer":"https://evil.example","token_endpoint":"https://evil.example/t"}`
		}}, "names issuer"},
		"redirect": {map[string]func(string) (int, string){wellKnownOIDC: func(string) (int, string) { return 302, "https://evil.example/doc" }}, "not followed"},
	} {
		t.Run(name, func(t *testing.T) {
			docs = tc.docs
			got, err := testFetcher().discoverMember(t.Context(), srv.URL, pickTokenEndpoint)
			if strings.HasPrefix(tc.want, "/") {
				if err != nil || got != srv.URL+tc.want {
					t.Fatalf("token endpoint = %q, %v; want %s%s", got, err, srv.URL, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("token endpoint = %q, %v; want an error containing %q", got, err, tc.want)
			}
		})
	}
}
