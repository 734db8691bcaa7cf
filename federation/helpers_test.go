package federation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
)

// idp is an identity provider served by httptest: discovery documents
// and key sets it can change while a test runs.
type idp struct {
	t    testing.TB
	srv  *httptest.Server
	path string // the issuer's path, "" or "/realms/x"

	mu           sync.Mutex
	docIssuer    string // the issuer its documents state; default the issuer
	keys         []json.RawMessage
	ssfKeys      []json.RawMessage
	cacheControl string
	down         bool // every request fails with 503
	noOIDC       bool // only RFC 8414 metadata is served

	jwksHits, ssfHits atomic.Int64
}

// newIDP starts a provider whose issuer is its URL plus path, publishing
// keys.
func newIDP(t testing.TB, path string, keys ...json.RawMessage) *idp {
	p := &idp{t: t, path: path, keys: keys}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// issuer returns the provider's issuer URL.
func (p *idp) issuer() string { return p.srv.URL + p.path }

func (p *idp) set(fn func(p *idp)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(p)
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	iss := p.issuer()
	if p.docIssuer != "" {
		iss = p.docIssuer
	}
	meta := func() {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "jwks_uri": p.srv.URL + "/jwks",
			"authorization_endpoint": p.srv.URL + "/auth"})
	}
	switch r.URL.Path {
	case p.path + wellKnownOIDC:
		if p.noOIDC {
			http.NotFound(w, r)
			return
		}
		meta()
	case wellKnownOAuth + p.path:
		meta()
	case wellKnownSSF + p.path:
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "jwks_uri": p.srv.URL + "/ssf-jwks"})
	case "/jwks":
		p.jwksHits.Add(1)
		if p.cacheControl != "" {
			w.Header().Set("Cache-Control", p.cacheControl)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	case "/ssf-jwks":
		p.ssfHits.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.ssfKeys})
	default:
		http.NotFound(w, r)
	}
}

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// ecKey returns a new P-256 public key as a provider publishes it, with
// kid and members overriding or adding to it (a nil value removes one).
func ecKey(t testing.TB, kid string, extra map[string]any) json.RawMessage {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rawKey(t, priv.Public(), kid, extra)
}

// edKey returns a new Ed25519 public key as a provider publishes it.
func edKey(t testing.TB, kid string, extra map[string]any) json.RawMessage {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rawKey(t, pub, kid, extra)
}

var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// rsa2048Key returns this test binary's RSA 2048 public key as a provider
// publishes it.
func rsa2048Key(t testing.TB, kid string, extra map[string]any) json.RawMessage {
	priv, err := rsaKey()
	if err != nil {
		t.Fatal(err)
	}
	return rawKey(t, priv.Public(), kid, extra)
}

func rawKey(t testing.TB, pub crypto.PublicKey, kid string, extra map[string]any) json.RawMessage {
	t.Helper()
	k, err := bus.NewJWK(pub)
	if err != nil {
		t.Fatal(err)
	}
	k.Kid = kid
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for name, v := range extra {
		if v == nil {
			delete(m, name)
		} else {
			m[name] = v
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
