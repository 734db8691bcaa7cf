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
