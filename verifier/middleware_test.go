package verifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
)

func TestMiddleware(t *testing.T) {
	k := newTestKeys(t)
	clk := &clock{now: time.Now()}
	v, _, _ := newMemVerifier(t, k, clk)
	var called int
	h := Middleware(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called++
		c, ok := ClaimsFrom(r.Context())
		if !ok {
			t.Error("no claims in the context")
			return
		}
		fmt.Fprint(w, c.Subject)
	}))
	serve := func(auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := serve("Bearer " + k.EdToken(t, baseClaims(clk.Now()))); w.Code != 200 || w.Body.String() != "alice" {
		t.Fatalf("valid token: %d %q", w.Code, w.Body)
	}
	for _, auth := range []string{"", "Bearer x.y.z", "Basic abc"} {
		w := serve(auth)
		if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%q: %d %q, want 401 with a challenge", auth, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	if called != 1 {
		t.Fatalf("next called %d times, want 1", called)
	}

	notReady, err := New(Config{Issuer: testIssuer, Audience: testAudience}, NewKeySet(nil, nil), nil, func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+k.EdToken(t, baseClaims(clk.Now())))
	Middleware(notReady, http.NotFoundHandler()).ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("not ready: %d, want 503 with Retry-After", w.Code)
	}
}

// TestMiddleware_RevokedInFlight: with a sidecar's verifier, a request in
// flight ends when its token is revoked.
func TestMiddleware_RevokedInFlight(t *testing.T) {
	f := newFixture(t)
	started := make(chan struct{})
	ended := make(chan error, 1)
	h := Middleware(f.sc.Verifier(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		ended <- context.Cause(r.Context())
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := baseClaims(time.Now().Add(-time.Second))
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+f.EdToken(t, c))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-started
	revoke(t, f.conn, f.sc, bus.KindToken, c["jti"].(string), time.Now())
	select {
	case cause := <-ended:
		if !errors.Is(cause, ErrRevoked) {
			t.Fatalf("cause = %v, want ErrRevoked", cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request still running 5s after its token was revoked")
	}
}

func TestIsHeraldHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Herald-Subject": true, "x-herald-subject": true, "X_Herald_Subject": true,
		"X-HERALD-ANYTHING": true, "x_herald-tenant": true,
		"X-Herald": false, "X-Heralds-Subject": false, "Authorization": false, "": false,
	} {
		if got := IsHeraldHeader(name); got != want {
			t.Errorf("IsHeraldHeader(%q) = %v, want %v", name, got, want)
		}
	}
}
