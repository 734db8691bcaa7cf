package issuer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestReplicas_CatchingUpReplicaDoesNotMint starts replica b on a stream
// that holds a revocation of ivan while b's follower cannot catch up: b
// mints nothing (sessions, refreshes, client credentials) and answers 503
// with Retry-After, and /readyz says it is not ready. Once the follower has
// caught up, b refuses ivan's refresh and serves everyone else.
func TestReplicas_CatchingUpReplicaDoesNotMint(t *testing.T) {
	srv := bustest.RunServer(t)
	a, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{})
	ivan := createSession(t, a, issuer.SessionRequest{Subject: "ivan"})
	for i := range 50 {
		revoke(t, a, "token", fmt.Sprintf("jti-%d", i))
	}
	revoke(t, a, "subject", "ivan")

	cfg := issuer.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet,
		ClientSecretCost: 4, IssuerURL: a.IssuerURL(), EventKeyFile: bustest.EventKeyFile(t)}
	b, err := issuer.Open(t.Context(), cfg, bustest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	release := issuer.HoldFollower(b)
	bustest.RunUntilStopped(t, b.Run, func() { b.Close() })

	code, raw := call(t, "POST", b.URL()+"/v1/clients", adminToken, issuer.ClientRequest{Name: "backend"})
	var cl issuer.Client
	if code != http.StatusCreated || json.Unmarshal(raw, &cl) != nil {
		t.Fatalf("register a client on b: %d %s", code, raw)
	}
	unavailable := func(what string, code int, h http.Header) {
		t.Helper()
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Errorf("%s on b while it catches up: %d, Retry-After %q; want 503 with Retry-After", what, code, h.Get("Retry-After"))
		}
	}
	if code, body := call(t, "GET", b.URL()+"/readyz", "", nil); code != http.StatusServiceUnavailable {
		t.Errorf("readyz on b while it catches up: %d %s, want 503", code, body)
	}
	code, _, h := form(t, b.URL()+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ivan.RefreshToken}}, "", "")
	unavailable("refresh", code, h)
	code, _, h = form(t, b.URL()+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, cl.ID, cl.Secret)
	unavailable("client_credentials", code, h)
	code, h = postJSON(t, b.URL()+"/v1/sessions", issuer.SessionRequest{Subject: "jade"})
	unavailable("session creation", code, h)

	release()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if code, body := call(t, "GET", b.URL()+"/readyz", "", nil); code != http.StatusOK {
			return fmt.Errorf("readyz on b: %d %s", code, body)
		}
		return nil
	})
	if r := refreshAt(t, b, ivan.RefreshToken, "", "", ""); r.code != 400 || r.err != "invalid_grant" {
		t.Fatalf("ivan's refresh on b once caught up: %v, want invalid_grant", r)
	}
	jade := createSession(t, b, issuer.SessionRequest{Subject: "jade"})
	if r := refreshAt(t, b, jade.RefreshToken, "", "", ""); r.code != http.StatusOK {
		t.Fatalf("a new session's refresh on b once caught up: %v", r)
	}
	if code, _, _ := form(t, b.URL()+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, cl.ID, cl.Secret); code != http.StatusOK {
		t.Fatalf("client_credentials on b once caught up: %d", code)
	}
}

// postJSON posts body with the admin token and returns the status and headers.
func postJSON(t *testing.T, endpoint string, body any) (int, http.Header) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), "POST", endpoint, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}
