package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// TestVerifierAcceptsPublishedKeys: what a Federation publishes is what a
// verifier needs. Keys read from a provider's JWKS reach a verifier's key
// set through HERALD_KEYS, and the provider's tokens verify with every
// algorithm; once the provider drops a key and its grace has passed, its
// tokens are refused.
func TestVerifierAcceptsPublishedKeys(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, time.Hour)

	var (
		mu   sync.Mutex
		keys []bus.JWK
		idp  *verifiertest.IdP
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": idp.Issuer, "jwks_uri": idp.Issuer + "/jwks"})
		case "/jwks":
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	mu.Lock()
	idp = verifiertest.NewIdP(t, srv.URL)
	for _, alg := range bus.ExternalAlgorithms() {
		keys = append(keys, idp.JWK(t, alg))
	}
	mu.Unlock()

	issuers, err := federation.FromURLs([]string{srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	fed, err := federation.New(federation.Config{Issuers: issuers, Conn: conn, Now: clock, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := fed.Refresh(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}

	ks := verifier.NewKeySet(nil, slog.New(slog.DiscardHandler))
	ks.TrustEventKeys(bustest.Signer(t).KeyID())
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ks.Watch(wctx, conn) }()
	t.Cleanup(func() { cancel(); <-done })
	db, err := verifier.OpenDenylist(filepath.Join(t.TempDir(), "denylist"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	v, err := verifier.New(verifier.Config{Issuer: "https://issuer.test", Audience: verifiertest.Audience}, ks, db, nil)
	if err != nil {
		t.Fatal(err)
	}

	check := func(alg string) error {
		_, _, err := v.Check(idp.Token(t, alg, idp.Claims(time.Now()), nil))
		return err
	}
	for _, alg := range bus.ExternalAlgorithms() {
		bustest.WaitFor(t, 10*time.Second, func() error { return check(alg) })
	}

	// The provider drops its EC key; after the grace period it is gone.
	mu.Lock()
	keys = keys[:2] // RS256 and PS256 stay; ES256 and EdDSA go
	mu.Unlock()
	if err := fed.Refresh(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	if err := check(bus.AlgES256); err != nil {
		t.Fatalf("a dropped key is refused before its grace ends: %v", err)
	}
	clockMu.Lock()
	now = now.Add(federation.DefaultMaxTokenLifetime)
	clockMu.Unlock()
	if err := fed.Refresh(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if err := check(bus.AlgES256); err == nil {
			return errors.New("a token of a dropped key still verifies")
		}
		return nil
	})
	if err := check(bus.AlgRS256); err != nil {
		t.Fatalf("a kept key is refused: %v", err)
	}
}
