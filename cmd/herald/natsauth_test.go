package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
)

// TestRun_DevSecuresNATS runs 'herald dev' in a fresh working directory
// with the default data directory: its NATS requires TLS and an nkey, the
// files are private, a verifier started with only --nats finds them and
// enforces a revocation, and the verifier credential cannot revoke.
func TestRun_DevSecuresNATS(t *testing.T) {
	t.Chdir(t.TempDir())
	issuerURL, _, logs := startDev(t, defaultDataDir)
	natsURL := regexp.MustCompile(`msg="herald dev ready".* nats=(\S+)`).FindStringSubmatch(logs.String())[1]
	authDir := filepath.Join(defaultDataDir, natsserver.AuthDir)
	if !strings.Contains(logs.String(), `msg="nats requires TLS and an nkey" dir=`+authDir) {
		t.Fatalf("no log line saying where the NATS credentials are:\n%s", logs)
	}
	fi, err := os.Stat(authDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v, mode %v; want 0700", authDir, err, fi.Mode())
	}
	entries, err := os.ReadDir(authDir)
	if err != nil || len(entries) != 7 {
		t.Fatalf("%s holds %d files (%v), want 7", authDir, len(entries), err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", e.Name(), err, info.Mode())
		}
		if strings.HasSuffix(e.Name(), ".nk") || strings.HasSuffix(e.Name(), "key.pem") {
			secret, _ := os.ReadFile(filepath.Join(authDir, e.Name()))
			for _, line := range strings.Split(strings.TrimSpace(string(secret)), "\n") {
				if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(logs.String(), line) {
					t.Errorf("the logs hold a line of %s", e.Name())
				}
			}
		}
	}

	// A client without the CA, or without an nkey, is refused.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	files := natsserver.AuthFiles{Dir: authDir}
	for _, cfg := range []bus.Config{{URL: natsURL}, {URL: natsURL, CAFile: files.CAFile()}} {
		if c, err := bus.Connect(ctx, cfg); err == nil {
			c.Close()
			t.Fatalf("connected to herald dev's NATS with %+v", cfg)
		}
	}

	// The verifier credential cannot publish a revocation.
	v, err := bus.Connect(ctx, bus.Config{URL: natsURL, NkeyFile: files.SeedFile(bus.RoleVerifier), CAFile: files.CAFile(),
		InboxPrefix: bus.VerifierInboxPrefix})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, before, err := v.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	now := time.Now()
	_, err = v.Publish(pctx, &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "mallory",
		Revocation: &bus.Revocation{Kind: bus.KindAll, At: now, Until: now.Add(time.Minute)}})
	pcancel()
	if err == nil {
		t.Fatal("the verifier credential published a revocation")
	}
	if _, after, err := v.StreamHead(ctx, bus.StreamRevocations); err != nil || after != before {
		t.Fatalf("HERALD head %d (%v) after the denied publish, want %d", after, err, before)
	}

	// A verifier given only --nats finds the credential and the CA.
	vlogs := startVerifierLogs(t, "--http", "127.0.0.1:0", "--nats", natsURL, "--data", "verifier-2",
		"--issuer", issuerURL, "--id", "extra-1")
	var verifierURL string
	bustest.WaitFor(t, 20*time.Second, func() error {
		m := regexp.MustCompile(`msg="verifier ready" .*http=(\S+) id=extra-1`).FindStringSubmatch(vlogs.String())
		if m == nil {
			return fmt.Errorf("no ready line yet:\n%s", vlogs)
		}
		verifierURL = m[1]
		return nil
	})
	if !strings.Contains(vlogs.String(), "nkey="+files.SeedFile(bus.RoleVerifier)) {
		t.Fatalf("the verifier did not say which credential it found:\n%s", vlogs)
	}
	tokenFile := filepath.Join(defaultDataDir, "admin.token")
	out := runCmd(t, "token", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "--json", "alice")
	sid := regexp.MustCompile(`"session_id": "([^"]+)"`).FindStringSubmatch(out)
	tok := regexp.MustCompile(`"access_token": "([^"]+)"`).FindStringSubmatch(out)
	if sid == nil || tok == nil {
		t.Fatalf("token output %s", out)
	}
	if code, www := verifyStatus(t, verifierURL, tok[1]); code != 200 {
		t.Fatalf("verify on the extra verifier = %d %s, want 200", code, www)
	}
	runCmd(t, "revoke", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "session", sid[1])
	bustest.WaitFor(t, 5*time.Second, func() error {
		if code, www := verifyStatus(t, verifierURL, tok[1]); code != 401 || !strings.Contains(www, "revoked") {
			return fmt.Errorf("verify after revoke = %d %s, want 401 revoked", code, www)
		}
		return nil
	})

	// Without discovery the same verifier is refused by the server.
	nlogs := startVerifierLogs(t, "--http", "127.0.0.1:0", "--nats", natsURL, "--data", "verifier-3", "--nats-discover=false")
	bustest.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(nlogs.String(), "certificate signed by unknown authority") {
			return fmt.Errorf("no TLS refusal logged yet:\n%s", nlogs)
		}
		return nil
	})
}

func TestRun_NATSPermissions(t *testing.T) {
	out := runCmd(t, "nats-permissions", "verifier", "--id", "edge-1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "--allow-pub=") || lines[1] != "--allow-sub="+bus.VerifierInboxPrefix+".>" {
		t.Fatalf("output:\n%s\nwant --allow-pub and --allow-sub lines", out)
	}
	pub := strings.Split(strings.TrimPrefix(lines[0], "--allow-pub="), ",")
	for _, want := range []string{"$KV.HERALD_VERIFIERS.edge-1", "herald.fleet.edge-1", "$JS.API.CONSUMER.CREATE.HERALD.>"} {
		if !slices.Contains(pub, want) {
			t.Errorf("publish allow list lacks %s: %v", want, pub)
		}
	}
	for _, s := range pub {
		if strings.HasPrefix(s, "herald.revoke.") || strings.HasPrefix(s, "$KV.HERALD_KEYS.") || s == "$KV.HERALD_VERIFIERS.>" {
			t.Errorf("publish allow list holds %s", s)
		}
	}
	if out := runCmd(t, "nats-permissions", "dashboard"); !strings.Contains(out, "--allow-sub=_INBOX.>,herald.fleet.>\n") {
		t.Errorf("dashboard output:\n%s", out)
	}
	for _, args := range [][]string{{"root"}, {"verifier", "--id", "a*"}, {"dashboard", "--id", "x"}, {}} {
		if err := run(t.Context(), append([]string{"nats-permissions"}, args...), io.Discard, io.Discard); err == nil {
			t.Errorf("nats-permissions %v: want an error", args)
		}
	}
}
