package sidecar

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/verifier"
)

// nginxExample is the deploy example the nginx test runs.
const nginxExample = "../../deploy/nginx/herald.conf"

// findNginx returns the nginx binary. Without one the test is skipped, or
// fails under CI (CI=true), where .ci/run installs it.
func findNginx(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("an nginx test: skipped under -short")
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed; .ci/run installs it (apt-get install -y nginx)")
	}
	t.Skip("nginx is not installed (apt-get install -y nginx); skipping the forward-auth test")
	return ""
}

// startNginx runs nginx with deploy/nginx/herald.conf, pointed at the
// verifier and app addresses, as a child process with everything under a
// temporary directory, and returns its base URL.
func startNginx(t *testing.T, verifierAddr, appAddr string) string {
	t.Helper()
	bin := findNginx(t)
	example, err := os.ReadFile(nginxExample)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	listen := freeAddr(t)
	conf := strings.NewReplacer(
		"server 127.0.0.1:8421;", "server "+verifierAddr+";",
		"server 127.0.0.1:8080;", "server "+appAddr+";",
		"listen 8000;", "listen "+listen+";",
	).Replace(string(example))
	for _, want := range []string{verifierAddr, appAddr, listen} {
		if !strings.Contains(conf, want) {
			t.Fatalf("the example no longer has the address %s replaces", want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "herald.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var user string
	if os.Geteuid() == 0 {
		user = "user root root;\n" // workers must reach the 0700 temporary directory
	}
	main := fmt.Sprintf(`%sworker_processes 1;
error_log %[2]s/error.log warn;
pid %[2]s/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/herald.conf;
}
`, user, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown of master and workers
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	url := "http://" + listen
	bustest.WaitFor(t, 10*time.Second, func() error {
		select {
		case err := <-exited:
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s\n%s", err, out.String(), logs)
		default:
		}
		resp, err := http.Get(url + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return url
}

// TestNginx_AuthRequest puts a real nginx with the deploy example's
// auth_request in front of a test application: a valid token reaches it
// with the verifier's identity headers (not the client's), others are
// refused with the verifier's challenge, and so is a token once revoked.
func TestNginx_AuthRequest(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		httpserve.WriteJSON(w, http.StatusOK, r.Header)
	}))
	t.Cleanup(app.Close)
	base := startNginx(t, f.sc.Addr().String(), strings.TrimPrefix(app.URL, "http://"))

	c := baseClaims(time.Now().Add(-time.Second))
	tok := f.EdToken(t, c)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/orders?id=1", strings.NewReader("body"))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Herald-Subject", "mallory")
	req.Header.Set("X-Herald-Tenant", "evil")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var seen http.Header
	err = json.NewDecoder(resp.Body).Decode(&seen)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("allowed request: %d, %v", resp.StatusCode, err)
	}
	for h, want := range map[string]string{
		verifier.HeaderSubject: "alice", verifier.HeaderTenant: "acme", verifier.HeaderSession: c["sid"].(string),
		verifier.HeaderClient: "web", verifier.HeaderScope: "read write",
	} {
		if got := seen.Values(h); len(got) != 1 || got[0] != want {
			t.Errorf("app saw %s = %q, want [%q]", h, got, want)
		}
	}
	if seen.Get(verifier.HeaderStale) != "" {
		t.Errorf("app saw %s = %q", verifier.HeaderStale, seen.Get(verifier.HeaderStale))
	}

	denied := func(t *testing.T, tok, reason string) {
		t.Helper()
		before := calls.Load()
		resp, body := get(t, base+"/orders", tok)
		wa := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(wa, reason) {
			t.Fatalf("status %d, WWW-Authenticate %q, body %.80s; want 401 naming %s", resp.StatusCode, wa, body, reason)
		}
		if calls.Load() != before {
			t.Fatal("a denied request reached the app")
		}
	}
	t.Run("denied", func(t *testing.T) {
		denied(t, "", `Bearer realm="herald"`)
		denied(t, "not.a.jwt", `error_description="malformed"`)
		expired := baseClaims(time.Now().Add(-time.Hour))
		expired["exp"] = time.Now().Add(-10 * time.Minute).Unix()
		denied(t, f.EdToken(t, expired), `error_description="expired"`)
	})
	t.Run("denied after revocation", func(t *testing.T) {
		revoke(t, f.conn, f.sc, bus.KindSession, c["sid"].(string), time.Now())
		denied(t, tok, `error_description="revoked"`)
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("app called %d times, want 1", n)
	}
}

// TestNginx_NoVerdict: while the verifier gives no verdict (here: it never
// caught up, the stream does not exist) nginx answers 503 with
// Retry-After, as the example promises, and the app is not called.
func TestNginx_NoVerdict(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	sc, _ := startSidecar(t, conn, t.TempDir())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the app was called without a verdict")
	}))
	t.Cleanup(app.Close)
	base := startNginx(t, sc.Addr().String(), strings.TrimPrefix(app.URL, "http://"))
	k := newTestKeys(t)
	resp, body := get(t, base+"/orders", k.EdToken(t, baseClaims(time.Now())))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q, body %.80s; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestNginx_DPoPTarget: behind the deploy example's nginx, a DPoP proof is
// checked against the method and URL the client sent to nginx, which the
// example passes to the verifier and overwrites whatever the client sent
// under those header names: a proof for GET /public/readonly does not
// admit DELETE /admin/users/42, nor one for https://victim.example/x a
// POST /transfer, whatever X-Forwarded-* or X-Original-* headers say.
func TestNginx_DPoPTarget(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		httpserve.WriteJSON(w, http.StatusOK, r.Header)
	}))
	t.Cleanup(app.Close)
	base := startNginx(t, f.sc.Addr().String(), strings.TrimPrefix(app.URL, "http://"))
	host := strings.TrimPrefix(base, "http://")
	k := newDPoPKey(t)
	tok := f.boundToken(t, k)

	refused := func(t *testing.T, method, path, proof string, forged map[string]string) {
		t.Helper()
		before := calls.Load()
		code, wa := dpopDo(t, method, base+path, tok, proof, forged)
		if code != http.StatusUnauthorized || !strings.Contains(wa, "invalid_dpop_proof") || calls.Load() != before {
			t.Fatalf("%s %s: %d %q (app calls %d→%d), want 401 invalid_dpop_proof", method, path, code, wa, before, calls.Load())
		}
	}
	t.Run("proof for a GET elsewhere, sent as a DELETE", func(t *testing.T) {
		refused(t, "DELETE", "/admin/users/42", k.Proof(t, "GET", base+"/public/readonly", tok, nil),
			forgedTarget("GET", host, "http", "/public/readonly"))
	})
	t.Run("proof for another site", func(t *testing.T) {
		refused(t, "POST", "/transfer", k.Proof(t, "POST", "https://victim.example/x", tok, nil),
			forgedTarget("POST", "victim.example", "https", "/x"))
	})
	t.Run("proof for the request", func(t *testing.T) {
		for _, forged := range []map[string]string{nil, forgedTarget("GET", "victim.example", "https", "/public/readonly")} {
			before := calls.Load()
			proof := k.Proof(t, "DELETE", base+"/admin/users/42", tok, nil)
			if code, wa := dpopDo(t, "DELETE", base+"/admin/users/42?x=1", tok, proof, forged); code != http.StatusOK || calls.Load() != before+1 {
				t.Fatalf("honest DELETE (forged headers %v): %d %q, want 200", forged != nil, code, wa)
			}
		}
	})
}
