package verifier_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// TestAttack_Sidecar runs the suite against a running sidecar's
// /v1/verify, as nginx auth_request or Envoy ext_authz would call it, and
// checks the sidecar still answers afterwards.
func TestAttack_Sidecar(t *testing.T) {
	k := verifiertest.NewKeys(t)
	sc := runSidecar(t, k)
	list := verifier.Attacks(t, k, time.Now())
	verify := func(t *testing.T, token string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", sc.URL()+"/v1/verify", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /v1/verify: %v", err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	took := verifier.RunAttacks(t, list, func(t *testing.T, a verifier.Attack) error {
		if a.NoHTTP() {
			t.Skip("no HTTP request carries this token; see TestSidecar_HeaderAbuse")
		}
		code, www := verify(t, a.Token())
		switch {
		case code == http.StatusOK:
			return nil
		case code != http.StatusUnauthorized:
			t.Fatalf("status %d, want 200 or 401", code)
		}
		_, desc, ok := strings.Cut(www, `error_description="`)
		if !ok || !strings.HasPrefix(www, `Bearer realm="herald", error="invalid_token"`) {
			t.Fatalf("WWW-Authenticate %q: want an RFC 6750 invalid_token challenge", www)
		}
		return fmt.Errorf("%s: %w", www, &verifier.Error{Reason: strings.TrimSuffix(desc, `"`)})
	})
	t.Logf("%d attacks over HTTP in %v", len(list), took)
	if took > 10*time.Second {
		t.Errorf("the suite took %v over HTTP: some token is expensive to refuse", took)
	}
	if code, www := verify(t, k.EdToken(t, verifiertest.BaseClaims(time.Now()))); code != http.StatusOK {
		t.Fatalf("a valid token after the suite: %d %s", code, www)
	}
	if st := sc.Status(); !st.Ready {
		t.Fatalf("sidecar not ready after the suite: %+v", st)
	}
}

// runSidecar runs a sidecar that trusts k's keys, on a bus of its own,
// until the test ends, and waits until it is ready.
func runSidecar(t *testing.T, k *verifiertest.Keys) *sidecar.Sidecar {
	t.Helper()
	srv := bustest.RunServer(t)
	conn := bustest.Setup(t, srv, 20*time.Minute)
	verifiertest.PublishKey(t, conn, k.EdKid, k.EdJWK)
	verifiertest.PublishKey(t, conn, k.EsKid, k.EsJWK)
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: verifiertest.Issuer, Audience: verifiertest.Audience},
		DataDir:  t.TempDir(), HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, conn)
	if err != nil {
		t.Fatalf("open sidecar: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sidecar run: %v", err)
		}
		sc.Close()
	})
	if err := sc.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	return sc
}
