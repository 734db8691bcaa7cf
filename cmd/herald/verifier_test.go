package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// startVerifier runs 'herald verifier' with id on a free port, reporting
// every 100ms, until the test ends, and returns its URL read from its
// ready line.
func startVerifier(t *testing.T, id string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	args = append([]string{"verifier", "--http", "127.0.0.1:0", "--heartbeat", "100ms", "--id", id, "--max-staleness", "5s"}, args...)
	go func() { done <- run(ctx, args, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("herald verifier %s: %v", id, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("herald verifier %s did not stop", id)
		}
	})
	var url string
	ready := regexp.MustCompile(`msg="verifier ready" .*http=(\S+) id=` + regexp.QuoteMeta(id) + ` `)
	bustest.WaitFor(t, 20*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("herald verifier %s exited early: %v\n%s", id, err, logs)
		default:
		}
		m := ready.FindStringSubmatch(logs.String())
		if m == nil {
			return fmt.Errorf("no ready line yet:\n%s", logs)
		}
		url = m[1]
		return nil
	})
	return url
}

// startVerifierLogs runs 'herald verifier' with args until the test ends
// and returns its logs.
func startVerifierLogs(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"verifier"}, args...), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("herald verifier: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("herald verifier did not stop")
		}
	})
	return logs
}

// TestRun_VerifierProxyAndFleet runs 'herald dev' and a second verifier in
// proxy mode in front of a test app, then lists the fleet with 'herald
// status --issuer-url'.
func TestRun_VerifierProxyAndFleet(t *testing.T) {
	dir := t.TempDir()
	issuerURL, _, devLogs := startDev(t, dir)
	natsURL := regexp.MustCompile(`msg="herald dev ready".* nats=(\S+)`).FindStringSubmatch(devLogs.String())[1]
	tokenFile := filepath.Join(dir, "admin.token")

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-Herald-Subject"))
	}))
	t.Cleanup(app.Close)

	proxyURL := startVerifier(t, "proxy-1", "--nats", natsURL, "--data", filepath.Join(dir, "proxy"),
		"--nats-nkey", filepath.Join(dir, "nats-auth", "verifier.nk"), "--nats-ca", filepath.Join(dir, "nats-auth", "ca.pem"),
		"--issuer", issuerURL, "--upstream", app.URL)

	tok := strings.TrimSpace(runCmd(t, "token", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "alice"))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, proxyURL+"/hello", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Herald-Subject", "mallory")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello alice" {
		t.Fatalf("through the proxy: %d %q, want 200 hello alice", resp.StatusCode, body)
	}
	if resp, err := http.Get(proxyURL + "/hello"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %v %v, want 401", resp.StatusCode, err)
	}

	// Both verifiers report to the fleet; the issuer lists them.
	bustest.WaitFor(t, 10*time.Second, func() error {
		out := runCmd(t, "status", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "--json")
		var list struct {
			StreamHead uint64 `json:"stream_head"`
			Verifiers  []struct {
				ID    string `json:"id"`
				Lag   uint64 `json:"lag"`
				Ready bool   `json:"ready"`
				Live  bool   `json:"live"`
			} `json:"verifiers"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return fmt.Errorf("status --json output %q: %v", out, err)
		}
		if len(list.Verifiers) != 2 {
			return fmt.Errorf("fleet = %s, want 2 verifiers", out)
		}
		for _, v := range list.Verifiers {
			if !v.Ready || !v.Live || v.Lag != 0 {
				return fmt.Errorf("verifier %s not ready, live and caught up: %s", v.ID, out)
			}
		}
		return nil
	})
	out := runCmd(t, "status", "--issuer-url", issuerURL, "--admin-token-file", tokenFile)
	if !regexp.MustCompile(`(?m)^proxy-1 +\S+ +dev +\d+ +\d+ +0 +ready `).MatchString(out) || !strings.Contains(out, "2 verifiers") {
		t.Fatalf("status table:\n%s", out)
	}
	// Without the admin token the fleet is not shown.
	t.Setenv("HERALD_ADMIN_TOKEN", "wrong")
	if err := run(t.Context(), []string{"status", "--fleet", "--issuer-url", issuerURL}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("status with a wrong admin token: %v, want 401", err)
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := parsePrefixes(" 127.0.0.0/8, ::1/128,10.1.2.3 ,::ffff:192.0.2.1,192.168.1.7/24")
	want := []string{"127.0.0.0/8", "::1/128", "10.1.2.3/32", "192.0.2.1/32", "192.168.1.0/24"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("parsePrefixes = %v, %v; want %v", got, err, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
	if none, err := parsePrefixes(""); err != nil || none == nil || len(none) != 0 {
		t.Errorf("empty list = %#v, %v; want an empty, non-nil list (trust none)", none, err)
	}
	for _, bad := range []string{"localhost", "10.0.0.0/33", "1.2.3"} {
		if _, err := parsePrefixes(bad); err == nil {
			t.Errorf("parsePrefixes(%q) accepted", bad)
		}
	}
}
