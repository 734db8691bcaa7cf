package federation

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// TestAttack_AbandonedSignalRefresh: a sender whose token names an
// unknown kid and who hangs up while the key set is being fetched does
// not waste the issuer's one refresh per interval: the fetch completes
// for the next signal, which the provider's new key then verifies.
func TestAttack_AbandonedSignalRefresh(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil), edKey(t, "k2", nil))
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	serve := p.srv.Config.Handler
	p.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			once.Do(func() {
				close(entered)
				<-release
			})
		}
		serve.ServeHTTP(w, r)
	})
	is := tokenIssuer(p)
	f := newFed(t, b, newClock(), nil, is)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() {
		_, _, ok := f.KeyOrRefresh(ctx, is.URL, "k2")
		done <- ok
	}()
	<-entered
	cancel() // the sender hangs up
	close(release)
	<-done
	if _, _, ok := f.KeyOrRefresh(context.Background(), is.URL, "k2"); !ok {
		t.Fatalf("the next signal's key k2 is unknown: %+v", status(f, is.URL))
	}
}
