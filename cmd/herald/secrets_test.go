package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// TestRun_NoSecretsInLogs runs 'herald dev' at log level debug through a
// full flow — sessions, refresh and refresh-token reuse, a machine client
// and its tokens, a named admin credential, revocations, introspection,
// verification, wrong secrets and admin-token guesses — and then, once the
// server has stopped and every log line is written, looks for every
// secret it saw in the logs and in the event stream that anyone with read
// rights on NATS can read. None may appear, whole or in part: the admin
// token, access tokens (or their signatures), refresh tokens, client
// secrets, credential tokens, and the wrong secrets people type.
func TestRun_NoSecretsInLogs(t *testing.T) {
	dir := t.TempDir()
	var (
		secrets []string
		logs    *syncBuffer
		events  string
	)
	keep := func(s ...string) {
		for _, v := range s {
			if v == "" {
				t.Fatal("an empty secret: the flow did not get what it expected")
			}
			secrets = append(secrets, v)
		}
	}
	// Registered first, so it runs last: after startDev's cleanup has
	// stopped the server and its last log line is written.
	t.Cleanup(func() {
		if logs == nil {
			return
		}
		text := logs.String()
		if !strings.Contains(text, `level=DEBUG`) {
			t.Errorf("no debug lines in the logs: is --log-level debug applied?")
		}
		for _, s := range secrets {
			for _, part := range secretParts(s) {
				if strings.Contains(text, part) {
					t.Errorf("logs contain a secret (%.12s...): %q", s, part)
				}
				if strings.Contains(events, part) {
					t.Errorf("the event stream contains a secret (%.12s...): %q", s, part)
				}
			}
		}
		t.Logf("%d secrets, none in %d bytes of logs or %d bytes of events", len(secrets), len(text), len(events))
	})
	var issuerURL, verifierURL string
	issuerURL, verifierURL, logs = startDev(t, dir, "--log-level", "debug")
	tokenFile := filepath.Join(dir, "admin.token")
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	admin := strings.TrimSpace(string(b))
	keep(admin)
	base := []string{"--issuer-url", issuerURL, "--admin-token-file", tokenFile}
	// cli runs a command with base after its verb ("client create"), so
	// flags come before the positional arguments.
	cli := func(out any, args ...string) {
		t.Helper()
		n := 1
		if args[0] == "client" || args[0] == "credential" {
			n = 2
		}
		s := runCmd(t, append(append(args[:n:n], base...), args[n:]...)...)
		if out != nil {
			if err := json.Unmarshal([]byte(s), out); err != nil {
				t.Fatalf("herald %s: output %q: %v", args[0], s, err)
			}
		}
	}
	type tokens struct {
		SessionID    string `json:"session_id"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}

	// Sessions, a refresh, and reuse of the refresh token it used up.
	var alice, bob tokens
	cli(&alice, "token", "--json", "--tenant", "acme", "--scope", "read", "alice")
	cli(&bob, "token", "--json", "bob")
	keep(alice.AccessToken, alice.RefreshToken, bob.AccessToken, bob.RefreshToken)
	var refreshed tokens
	code, body := form(t, issuerURL+"/oauth2/token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {alice.RefreshToken}})
	if code != 200 || json.Unmarshal(body, &refreshed) != nil {
		t.Fatalf("refresh: %d %s", code, body)
	}
	keep(refreshed.AccessToken, refreshed.RefreshToken)
	if code, body := form(t, issuerURL+"/oauth2/token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {alice.RefreshToken}}); code != 400 {
		t.Fatalf("reuse of a used refresh token: %d %s, want 400", code, body)
	}

	// A machine client: its secret, its token, a wrong secret, a rotation.
	var client struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	cli(&client, "client", "create", "--scope", "invoices:read", "billing")
	keep(client.Secret)
	basic := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	}
	var cc tokens
	code, body = form(t, issuerURL+"/oauth2/token", basic(client.ID, client.Secret), url.Values{"grant_type": {"client_credentials"}})
	if code != 200 || json.Unmarshal(body, &cc) != nil {
		t.Fatalf("client_credentials: %d %s", code, body)
	}
	keep(cc.AccessToken)
	wrong := "hcs_" + randomSecret(t)
	keep(wrong)
	if code, body := form(t, issuerURL+"/oauth2/token", basic(client.ID, wrong), url.Values{"grant_type": {"client_credentials"}}); code != 401 {
		t.Fatalf("client_credentials with a wrong secret: %d %s, want 401", code, body)
	}
	var rotated struct {
		Secret string `json:"client_secret"`
	}
	cli(&rotated, "client", "rotate", client.ID)
	keep(rotated.Secret)

	// A named credential, used, rotated, and its old token tried.
	var cred struct {
		Token string `json:"token"`
	}
	cli(&cred, "credential", "create", "--scopes", "revoke", "soc")
	keep(cred.Token)
	if code, body := adminJSON(t, issuerURL+"/v1/revocations", cred.Token, `{"kind":"subject","value":"bob","reason":"offboarded"}`); code != 200 {
		t.Fatalf("revoke with the named credential: %d %s", code, body)
	}
	var cred2 struct {
		Token string `json:"token"`
	}
	cli(&cred2, "credential", "rotate", "soc")
	keep(cred2.Token)
	if code, _ := adminJSON(t, issuerURL+"/v1/revocations", cred.Token, `{"kind":"token","value":"x"}`); code != 401 {
		t.Fatalf("the rotated-out credential: %d, want 401", code)
	}

	// Revocations, RFC 7009 revocation and introspection, verification.
	cli(nil, "revoke", "session", alice.SessionID, "--reason", "stolen laptop")
	if code, body := form(t, issuerURL+"/oauth2/revoke", "", url.Values{"token": {refreshed.RefreshToken}}); code != 200 {
		t.Fatalf("RFC 7009 revocation of a refresh token: %d %s", code, body)
	}
	if code, body := form(t, issuerURL+"/oauth2/revoke", basic(client.ID, rotated.Secret), url.Values{"token": {cc.AccessToken}}); code != 200 {
		t.Fatalf("RFC 7009 revocation of an access token: %d %s", code, body)
	}
	for _, tok := range []string{alice.AccessToken, bob.AccessToken, refreshed.AccessToken, cc.AccessToken} {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", issuerURL+"/oauth2/introspect",
			strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+admin)
		do(t, req)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		for _, tok := range []string{alice.AccessToken, bob.AccessToken, refreshed.AccessToken, cc.AccessToken} {
			if code, www := verifyStatus(t, verifierURL, tok); code != 401 {
				return fmt.Errorf("verify a revoked token: %d %s, want 401", code, www)
			}
		}
		return nil
	})
	verifyStatus(t, verifierURL, alice.AccessToken+"x") // a bad signature, logged at debug

	// Guesses at the admin token, from an address of their own (the limit
	// on failures would otherwise stop this test's own calls), past the
	// limit: the issuer logs that, not what was tried.
	guesser := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	for i := range 12 {
		guess := "hrld_" + randomSecret(t)
		keep(guess)
		req, _ := http.NewRequestWithContext(t.Context(), "GET", issuerURL+"/v1/clients", nil)
		req.Header.Set("Authorization", "Bearer "+guess)
		resp, err := guesser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 401, false: 429}[i < 10]; resp.StatusCode != want {
			t.Fatalf("guess %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "admin authentication failures over the limit") {
			return fmt.Errorf("no log line about the guesses")
		}
		return nil
	})

	events = runCmd(t, append(append([]string{"events"}, base...), "--json")...)
	if !strings.Contains(events, `"client.create"`) || !strings.Contains(events, `"revocation"`) {
		t.Fatalf("event stream lacks the flow's events:\n%s", events)
	}
}

// secretParts returns what of a secret must not appear anywhere: all of
// it, and the part that makes it secret (a JWT's signature; the random
// part of an hrt_, hcs_ or hrld_ token), also cut short, as a log line
// that truncates a token would.
func secretParts(s string) []string {
	secret := s
	if parts := strings.Split(s, "."); len(parts) == 3 {
		secret = parts[2]
	} else if _, rest, ok := strings.Cut(s, "_"); ok {
		secret = rest
	}
	return []string{s, secret, secret[:min(16, len(secret))]}
}

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// form posts a form to url, with an Authorization header if auth is set.
func form(t *testing.T, url, auth string, v url.Values) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", url, strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return do(t, req)
}

// adminJSON posts a JSON body to url with a bearer credential.
func adminJSON(t *testing.T, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}
