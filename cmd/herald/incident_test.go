package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

func TestRun_BulkRevokeFromFileAndEvents(t *testing.T) {
	dir := t.TempDir()
	issuerURL, verifierURL, _ := startDev(t, dir)
	tokenFile := filepath.Join(dir, "admin.token")
	base := []string{"--issuer-url", issuerURL, "--admin-token-file", tokenFile}

	var sess struct {
		AccessToken string `json:"access_token"`
	}
	out := runCmd(t, append(append([]string{"token"}, base...), "--json", "mallory")...)
	if err := json.Unmarshal([]byte(out), &sess); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(sess.AccessToken, ".")
	var claims struct {
		JTI string `json:"jti"`
	}
	if b, err := decodeSegment(parts[1]); err != nil || json.Unmarshal(b, &claims) != nil {
		t.Fatalf("claims: %v", err)
	}

	// 120,001 values: three requests, the real jti among them.
	var file bytes.Buffer
	file.WriteString("# leaked jtis\n")
	for i := range 120000 {
		fmt.Fprintf(&file, "%032x\n", i)
		if i == 60000 {
			file.WriteString(claims.JTI + "\n")
		}
	}
	path := filepath.Join(dir, "jtis.txt")
	if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := append(append([]string{"revoke"}, base...), "token", "--from-file", path, "--reason", "leak")
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("bulk revoke: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "revoked 120001 token values") || !strings.Contains(stderr.String(), "100%") {
		t.Fatalf("bulk revoke output %q, progress %q", stdout.String(), stderr.String())
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if code, www := verifyStatus(t, verifierURL, sess.AccessToken); code != 401 || !strings.Contains(www, "revoked") {
			return fmt.Errorf("verify = %d %s, want 401 revoked", code, www)
		}
		return nil
	})

	// The event stream shows the bulk revocation and who made it.
	out = runCmd(t, append(append([]string{"events"}, base...), "--json", "--type", "admin.")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last struct {
		ID    string `json:"id"`
		Event struct {
			Type  string `json:"type"`
			Actor string `json:"actor"`
			Admin struct {
				Action string `json:"action"`
				Count  int    `json:"count"`
			} `json:"admin"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("events --json line %q: %v", lines[len(lines)-1], err)
	}
	if last.ID == "" || last.Event.Type != "admin.revoke" || last.Event.Actor != "admin" || last.Event.Admin.Count != 50000 && last.Event.Admin.Count != 20001 {
		t.Fatalf("last admin event %+v", last)
	}

	// --wait confirms with the fleet (here: the dev verifier).
	out = runCmd(t, append(append([]string{"revoke"}, base...), "subject", "mallory", "--wait", "5s")...)
	if !strings.Contains(out, "confirmed by 1 verifiers") {
		t.Fatalf("revoke --wait output %q", out)
	}

	// Dry run reports and changes nothing.
	stdout.Reset()
	if err := run(t.Context(), append(append([]string{"revoke"}, base...), "subject", "nobody", "--dry-run"), &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), `"dry_run": true`) {
		t.Fatalf("dry run output %q", stdout.String())
	}
}

func TestRun_Credentials(t *testing.T) {
	dir := t.TempDir()
	issuerURL, _, _ := startDev(t, dir)
	base := []string{"--issuer-url", issuerURL, "--admin-token-file", filepath.Join(dir, "admin.token")}
	out := runCmd(t, append(append([]string{"credential", "create"}, base...), "--scopes", "revoke", "oncall")...)
	var cred struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &cred); err != nil || cred.Token == "" {
		t.Fatalf("credential create: %q %v", out, err)
	}
	t.Setenv("HERALD_ADMIN_TOKEN", cred.Token)
	if err := run(t.Context(), []string{"keys", "rotate", "--issuer-url", issuerURL}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "403") {
		t.Fatalf("keys rotate with a revoke-only credential: %v, want 403", err)
	}
	runCmd(t, "revoke", "--issuer-url", issuerURL, "token", "some-jti")
}
