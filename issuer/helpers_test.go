package issuer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

const adminToken = "test-admin-token-at-least-32-bytes"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// runIssuer opens and runs an issuer storing in dir until the test ends or
// the returned stop is called.
func runIssuer(t *testing.T, s *natsserver.Server, dir string) (*issuer.Service, func()) {
	t.Helper()
	return runIssuerOn(t, bustest.Connect(t, s), issuer.Config{DataDir: dir})
}

// runIssuerOn opens and runs an issuer on conn with cfg, whose zero
// fields get the tests' settings: a temporary data directory, a random
// port, the test admin token and a stable issuer URL (the same across
// restarts and replicas, as in production).
func runIssuerOn(t *testing.T, conn *bus.Conn, cfg issuer.Config) (*issuer.Service, func()) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	cfg.AdminToken, cfg.ClientSecretCost = adminToken, 4
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.IssuerURL == "" {
		cfg.IssuerURL = "https://issuer.test"
	}
	if cfg.EventKeyFile == "" {
		cfg.EventKeyFile = bustest.EventKeyFile(t)
	}
	if cfg.SSFKeyFile == "" {
		cfg.SSFKeyFile = bustest.SSFKeyFile(t)
	}
	svc, err := issuer.Open(t.Context(), cfg, conn)
	if err != nil {
		t.Fatalf("open issuer: %v", err)
	}
	return svc, bustest.RunUntilStopped(t, svc.Run, func() { svc.Close() })
}

// runSidecar opens and runs a verifier sidecar storing in dir.
func runSidecar(t *testing.T, s *natsserver.Server, iss, dir string) (*sidecar.Sidecar, func()) {
	t.Helper()
	conn := bustest.Connect(t, s)
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: iss, Audience: issuer.DefaultAudience},
		DataDir:  dir, HTTPAddr: "127.0.0.1:0", Logger: quiet,
	}, conn)
	if err != nil {
		t.Fatalf("open sidecar: %v", err)
	}
	return sc, bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
}

// runFleet runs n sidecars trusting svc and waits until all are ready.
func runFleet(t *testing.T, s *natsserver.Server, svc *issuer.Service, n int) []*sidecar.Sidecar {
	t.Helper()
	var scs []*sidecar.Sidecar
	for range n {
		sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
		scs = append(scs, sc)
	}
	waitReady(t, scs...)
	return scs
}

func waitReady(t *testing.T, scs ...*sidecar.Sidecar) {
	t.Helper()
	for _, sc := range scs {
		bustest.WaitFor(t, 10*time.Second, func() error {
			if !sc.Ready() {
				return fmt.Errorf("sidecar %s not ready: %+v", sc.URL(), sc.Status())
			}
			return nil
		})
	}
}

// call sends a JSON request with the admin token and returns status and body.
func call(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func createSession(t *testing.T, svc *issuer.Service, req issuer.SessionRequest) issuer.SessionResponse {
	t.Helper()
	code, body := call(t, "POST", svc.URL()+"/v1/sessions", adminToken, req)
	if code != http.StatusOK {
		t.Fatalf("create session: %d %s", code, body)
	}
	var resp issuer.SessionResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

func revoke(t *testing.T, svc *issuer.Service, kind, value string) issuer.RevocationResult {
	t.Helper()
	code, body := call(t, "POST", svc.URL()+"/v1/revocations", adminToken,
		issuer.RevocationRequest{Kind: kind, Value: value, Reason: "test"})
	if code != http.StatusOK {
		t.Fatalf("revoke %s %s: %d %s", kind, value, code, body)
	}
	var res issuer.RevocationResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// introspectAt asks svc about tok over RFC 7662 with the admin token.
func introspectAt(t *testing.T, svc *issuer.Service, tok string) issuer.Introspection {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", svc.URL()+"/oauth2/introspect",
		strings.NewReader(url.Values{"token": {tok}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var in issuer.Introspection
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&in) != nil {
		t.Fatalf("introspect on %s: %d", svc.URL(), resp.StatusCode)
	}
	return in
}

// verify asks a sidecar over HTTP and returns the status and the reason.
func verify(t *testing.T, sc *sidecar.Sidecar, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", sc.URL()+"/v1/verify", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	www := resp.Header.Get("WWW-Authenticate")
	_, reason, _ := strings.Cut(www, `error_description="`)
	return resp.StatusCode, strings.TrimSuffix(reason, `"`)
}

func wantVerdict(t *testing.T, sc *sidecar.Sidecar, token string, wantCode int, wantReason string) error {
	code, reason := verify(t, sc, token)
	if code != wantCode || reason != wantReason {
		return fmt.Errorf("verify on %s = %d %q, want %d %q", sc.URL(), code, reason, wantCode, wantReason)
	}
	return nil
}

func claimsOf(t *testing.T, token string) verifier.Claims {
	t.Helper()
	var c verifier.Claims
	decodeSegment(t, token, 1, &c)
	return c
}

func headerKid(t *testing.T, token string) string {
	t.Helper()
	var h struct {
		Kid string `json:"kid"`
	}
	decodeSegment(t, token, 0, &h)
	return h.Kid
}

func decodeSegment(t *testing.T, token string, i int, v any) {
	t.Helper()
	parts := strings.Split(token, ".")
	data, err := jsonSegment(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}
