package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/federation/federationtest"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestIssuerFlags_Trust: --trust-issuer and --trust-issuers-file give the
// issuer its trusted issuers, merged; bad ones are refused at start with
// an error naming the flag, and --ssf-poll needs its token file, whose
// mode is checked.
func TestIssuerFlags_Trust(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "trust.json")
	if err := os.WriteFile(file, []byte(`{"issuers": [{"issuer": "https://b.example", "tokens": false, "ssf": true}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "ssf.token")
	if err := os.WriteFile(token, []byte("poll-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.token")
	if err := os.WriteFile(open, []byte("poll-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) error {
		var f issuerFlags
		fs := newFlagSet("issuer", "issuer", io.Discard)
		f.register(fs)
		if err := parseFlags(fs, args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config(slog.New(slog.DiscardHandler), &telemetry{})
		if err != nil {
			return err
		}
		if len(cfg.Trust) != 2 || cfg.Trust[0].URL != "https://a.example" || !cfg.Trust[0].Tokens || cfg.Trust[1].Tokens {
			return fmt.Errorf("trust = %+v", cfg.Trust)
		}
		if len(cfg.SSFPolls) != 1 || cfg.SSFPolls[0].Token != "poll-secret" {
			return fmt.Errorf("polls = %+v", cfg.SSFPolls)
		}
		return nil
	}
	if err := parse("--trust-issuer", "https://a.example", "--trust-issuers-file", file,
		"--ssf-poll", "https://b.example/poll", "--ssf-poll-token-file", token); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"plain http":      {[]string{"--trust-issuer", "http://a.example"}, "--trust-issuer"},
		"missing file":    {[]string{"--trust-issuers-file", filepath.Join(dir, "none.json")}, "--trust-issuers-file"},
		"twice":           {[]string{"--trust-issuer", "https://b.example", "--trust-issuers-file", file}, "b.example"},
		"poll, no token":  {[]string{"--ssf-poll", "https://b.example/poll"}, "--ssf-poll-token-file"},
		"open token file": {[]string{"--ssf-poll", "https://b.example/poll", "--ssf-poll-token-file", open}, "open.token"},
	} {
		if err := parse(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.want)
		}
	}
}

// TestStatus_TrustedIssuers: herald status shows each trusted issuer's
// keys as the issuer fetched them.
func TestStatus_TrustedIssuers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the herald binary")
	}
	idp := federationtest.NewIdP(t)
	f := newFleet(t)
	iss := f.startIssuer(filepath.Join(t.TempDir(), "issuer"), freeAddr(t), "--trust-issuer", idp.URL)
	t.Setenv("HERALD_ADMIN_TOKEN", f.admin)
	bustest.WaitFor(t, 10*time.Second, func() error {
		out := runCmd(t, "status", "--fleet", "--issuer-url", iss.url)
		if want := fmt.Sprintf("trusted issuer %s: 1 keys; ok", idp.URL); !strings.Contains(out, want) {
			return fmt.Errorf("status:\n%s\nwant %q", out, want)
		}
		return nil
	})
}

// TestIssuerFlags_SSFPollClientCredentials: --ssf-poll authenticates with
// client credentials (the secret read from a file whose mode is checked,
// scope ssf.manage unless set) or a static token, never both.
func TestIssuerFlags_SSFPollClientCredentials(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "client.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.secret")
	if err := os.WriteFile(open, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (issuer.Config, error) {
		var f issuerFlags
		fs := newFlagSet("issuer", "issuer", io.Discard)
		f.register(fs)
		if err := parseFlags(fs, args); err != nil {
			t.Fatal(err)
		}
		return f.config(slog.New(slog.DiscardHandler), &telemetry{})
	}
	cfg, err := parse("--ssf-poll", "https://a.example/ssf/poll/1", "--ssf-poll-client-id", "herald-b",
		"--ssf-poll-client-secret-file", secret)
	if err != nil {
		t.Fatal(err)
	}
	want := issuer.SSFPoll{URL: "https://a.example/ssf/poll/1", ClientID: "herald-b", ClientSecret: "s3cret", Scope: "ssf.manage"}
	if len(cfg.SSFPolls) != 1 || cfg.SSFPolls[0] != want {
		t.Fatalf("polls = %+v, want %+v", cfg.SSFPolls, want)
	}
	cfg, err = parse("--ssf-poll", "https://a.example/ssf/poll/1", "--ssf-poll-client-id", "herald-b",
		"--ssf-poll-client-secret-file", secret, "--ssf-poll-scope", "poll", "--ssf-poll-token-url", "https://idp.example/token")
	if err != nil || cfg.SSFPolls[0].Scope != "poll" || cfg.SSFPolls[0].TokenURL != "https://idp.example/token" {
		t.Fatalf("polls = %+v, %v; want scope poll and the token URL", cfg.SSFPolls, err)
	}
	token := filepath.Join(dir, "ssf.token")
	if err := os.WriteFile(token, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"both":         {[]string{"--ssf-poll", "https://a.example/p", "--ssf-poll-token-file", token, "--ssf-poll-client-id", "b", "--ssf-poll-client-secret-file", secret}, "--ssf-poll-token-file and --ssf-poll-client-id"},
		"no secret":    {[]string{"--ssf-poll", "https://a.example/p", "--ssf-poll-client-id", "b"}, "--ssf-poll-client-secret-file"},
		"no client id": {[]string{"--ssf-poll", "https://a.example/p", "--ssf-poll-client-secret-file", secret}, "--ssf-poll-client-id"},
		"no poll":      {[]string{"--ssf-poll-client-id", "b", "--ssf-poll-client-secret-file", secret}, "need --ssf-poll"},
		"open secret":  {[]string{"--ssf-poll", "https://a.example/p", "--ssf-poll-client-id", "b", "--ssf-poll-client-secret-file", open}, "open.secret"},
		"token, scope": {[]string{"--ssf-poll", "https://a.example/p", "--ssf-poll-token-file", token, "--ssf-poll-scope", "x"}, "--ssf-poll-scope"},
	} {
		_, err := parse(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error %v shows the secret", name, err)
		}
	}
}
