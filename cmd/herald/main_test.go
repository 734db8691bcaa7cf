package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a server's
// logger and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDev runs 'herald dev' on free ports in dir and returns the issuer
// and verifier URLs read from its ready line.
func startDev(t *testing.T, dir string, extra ...string) (issuerURL, verifierURL string, logs *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	args := append([]string{"dev", "--http", "127.0.0.1:0", "--verifier-http", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:0", "--data", dir}, extra...)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("herald dev: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("herald dev did not stop after cancel")
		}
	})
	ready := regexp.MustCompile(`msg="herald dev ready" issuer=(\S+) verifier=(\S+) nats=(\S+)`)
	bustest.WaitFor(t, 20*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("herald dev exited early: %v\n%s", err, logs)
		default:
		}
		m := ready.FindStringSubmatch(logs.String())
		if m == nil {
			return fmt.Errorf("no ready line yet in:\n%s", logs)
		}
		issuerURL, verifierURL = m[1], m[2]
		return nil
	})
	return issuerURL, verifierURL, logs
}

func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(t.Context(), args, &out, &errOut); err != nil {
		t.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

func verifyStatus(t *testing.T, verifierURL, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", verifierURL+"/v1/verify", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

func TestRun_DevTokenVerifyRevoke(t *testing.T) {
	dir := t.TempDir()
	issuerURL, verifierURL, logs := startDev(t, dir)
	tokenFile := filepath.Join(dir, "admin.token")
	fi, err := os.Stat(tokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file %s: %v, mode %v; want 0600", tokenFile, err, fi.Mode())
	}

	out := runCmd(t, "token", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "--json", "--tenant", "acme", "alice")
	var sess struct {
		SessionID   string `json:"session_id"`
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(out), &sess); err != nil {
		t.Fatalf("token output %q: %v", out, err)
	}
	if sess.TokenType != "Bearer" || sess.ExpiresIn != 300 || sess.SessionID == "" {
		t.Fatalf("session %+v: want Bearer, 300s, a session id", sess)
	}
	if code, www := verifyStatus(t, verifierURL, sess.AccessToken); code != 200 {
		t.Fatalf("verify fresh token = %d %s, want 200", code, www)
	}

	out = runCmd(t, "revoke", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "session", sess.SessionID, "--reason", "stolen laptop")
	if !strings.Contains(out, "revoked session") {
		t.Fatalf("revoke output %q", out)
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		code, www := verifyStatus(t, verifierURL, sess.AccessToken)
		if code != 401 || !strings.Contains(www, `error_description="revoked"`) {
			return fmt.Errorf("verify = %d %s, want 401 revoked", code, www)
		}
		return nil
	})

	// A value that starts with '-' (kids are base64url) is a value, not a flag.
	out = runCmd(t, "revoke", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "key", "-not-a-flag", "--reason", "test")
	if !strings.Contains(out, "revoked key -not-a-flag") {
		t.Fatalf("revoke key output %q", out)
	}

	var errOut bytes.Buffer
	err = run(t.Context(), []string{"revoke", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "everything"}, io.Discard, &errOut)
	if err == nil || !strings.Contains(err.Error(), "unknown kind") {
		t.Fatalf("revoke everything: err = %v, want unknown kind", err)
	}

	// Secrets stay out of the logs.
	admin, _ := os.ReadFile(tokenFile)
	for _, secret := range []string{strings.TrimSpace(string(admin)), sess.AccessToken} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("logs contain a secret")
		}
	}
}

func TestRun_EnvSetsFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HERALD_ADMIN_TOKEN", "env-admin-token-at-least-32-bytes")
	t.Setenv("HERALD_ACCESS_TTL", "90s")
	issuerURL, _, _ := startDev(t, dir)
	out := runCmd(t, "token", "--issuer-url", issuerURL, "--json", "dave")
	if !strings.Contains(out, `"expires_in": 90`) {
		t.Fatalf("token output %s: want expires_in 90 from HERALD_ACCESS_TTL", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.token")); !os.IsNotExist(err) {
		t.Fatalf("admin.token created although HERALD_ADMIN_TOKEN is set: %v", err)
	}
}

func TestRun_Commands(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "herald ") {
		t.Fatalf("version: %q, %v", out.String(), err)
	}
	if err := run(t.Context(), []string{"frobnicate"}, io.Discard, io.Discard); err == nil {
		t.Fatal("unknown command: want error")
	}
	if err := run(t.Context(), nil, io.Discard, io.Discard); err == nil {
		t.Fatal("no command: want error")
	}
	t.Setenv("HERALD_HTTP", "not-an-address")
	if err := run(t.Context(), []string{"verifier", "--nats", "nats://127.0.0.1:1", "--data", t.TempDir()}, io.Discard, io.Discard); err == nil {
		t.Fatal("verifier with a bad HERALD_HTTP: want error")
	}
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func TestIssuerFlags_EventStreamMaxAge(t *testing.T) {
	var f issuerFlags
	fs := newFlagSet("issuer", "issuer", io.Discard)
	f.register(fs)
	t.Setenv("HERALD_EVENT_STREAM_MAX_AGE", "5m")
	if err := parseFlags(fs, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(slog.New(slog.DiscardHandler), &telemetry{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.EventStreamMaxAge, 5*time.Minute; got != want {
		t.Fatalf("EventStreamMaxAge = %s, want %s from HERALD_EVENT_STREAM_MAX_AGE", got, want)
	}
}
