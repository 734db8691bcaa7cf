//go:build linux

package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// oauth2ProxyModule is the oauth2-proxy release the OIDC discovery test
// runs, pinned. It is built from the module cache into a temporary
// directory, never added to this module's go.mod.
const oauth2ProxyModule = "github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6"

var (
	oauth2ProxyOnce sync.Once
	oauth2ProxyPath string
	oauth2ProxyErr  error
)

// oauth2ProxyBinary builds oauth2-proxy once per test binary and returns
// its path. Without it (no module proxy, a Go it does not build with) the
// test is skipped; under CI=true it fails instead, so CI never passes
// without running it.
func oauth2ProxyBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("a process test: skipped under -short")
	}
	oauth2ProxyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-oauth2-proxy")
		if err != nil {
			oauth2ProxyErr = fmt.Errorf("make build directory: %w", err)
			return
		}
		cmd := exec.Command("go", "install", oauth2ProxyModule)
		cmd.Dir = dir // outside this module: its go.mod is not touched
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			oauth2ProxyErr = fmt.Errorf("go install %s: %w\n%s", oauth2ProxyModule, err, out)
			return
		}
		oauth2ProxyPath = filepath.Join(dir, "oauth2-proxy")
	})
	if oauth2ProxyErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the oauth2-proxy test: %v", oauth2ProxyErr)
		}
		t.Skipf("oauth2-proxy cannot be built here: %v", oauth2ProxyErr)
	}
	return oauth2ProxyPath
}

// TestOAuth2Proxy_BearerTokens runs 'herald dev' and oauth2-proxy
// configured with nothing about Herald but --oidc-issuer-url: it finds
// the keys and algorithms through /.well-known/openid-configuration and
// lets a request with a Herald access token through to the upstream,
// while a garbage, an expired and another issuer's token are refused.
// oauth2-proxy does not see revocations: the verifier does.
//
// Herald's tokens carry no email claim; with --email-domain=* oauth2-proxy
// takes sub as the user and needs no email option.
func TestOAuth2Proxy_BearerTokens(t *testing.T) {
	bin := oauth2ProxyBinary(t)

	dir := t.TempDir()
	issuerURL, _, _ := startDev(t, dir)
	adminFile := filepath.Join(dir, "admin.token")
	otherDir := t.TempDir()
	otherURL, _, _ := startDev(t, otherDir)

	var reached sync.Map // user oauth2-proxy passed upstream -> true
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Store(r.Header.Get("X-Forwarded-User"), true)
		io.WriteString(w, "upstream")
	}))
	t.Cleanup(upstream.Close)

	addr := freeAddr(t)
	startProc(t, "oauth2-proxy", nil, bin,
		"--provider=oidc",
		"--oidc-issuer-url="+issuerURL,
		"--client-id="+issuer.DefaultAudience, // the audience of Herald's tokens
		"--client-secret=unused",
		"--cookie-secret=0123456789abcdef0123456789abcdef",
		"--skip-jwt-bearer-tokens",
		"--upstream="+upstream.URL+"/",
		"--email-domain=*",
		"--http-address="+addr,
	)
	proxyURL := "http://" + addr
	bustest.WaitFor(t, 20*time.Second, func() error {
		resp, err := http.Get(proxyURL + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ping: %d", resp.StatusCode)
		}
		return nil
	})

	through := func(token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "GET", proxyURL+"/orders", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET through oauth2-proxy: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	mint := func(iss, adminFile, sub string, extra ...string) string {
		t.Helper()
		args := append([]string{"token", "--issuer-url", iss, "--admin-token-file", adminFile}, extra...)
		return strings.TrimSpace(runCmd(t, append(args, sub)...))
	}

	valid := mint(issuerURL, adminFile, "alice")
	if code, body := through(valid); code != http.StatusOK || body != "upstream" {
		t.Fatalf("valid token: %d %.200s, want 200 from the upstream", code, body)
	}
	if _, ok := reached.Load("alice"); !ok {
		t.Errorf("the upstream never saw X-Forwarded-User: alice")
	}

	refused := func(name, token string) error {
		if code, body := through(token); code != http.StatusUnauthorized && code != http.StatusForbidden {
			return fmt.Errorf("%s: %d %.200s, want 401 or 403", name, code, body)
		}
		return nil
	}
	if err := refused("garbage token", "not.a.jwt"); err != nil {
		t.Error(err)
	}
	if err := refused("tampered token", valid[:len(valid)-4]+"AAAA"); err != nil {
		t.Error(err)
	}
	other := mint(otherURL, filepath.Join(otherDir, "admin.token"), "mallory")
	if err := refused("another issuer's token", other); err != nil {
		t.Error(err)
	}
	short := mint(issuerURL, adminFile, "bob", "--ttl", "1s")
	bustest.WaitFor(t, 10*time.Second, func() error { return refused("expired token", short) })
	if _, ok := reached.Load("mallory"); ok {
		t.Errorf("another issuer's token reached the upstream")
	}
}
