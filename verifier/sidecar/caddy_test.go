package sidecar

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// caddyExample is the deploy example the caddy tests run.
const caddyExample = "../../deploy/caddy/Caddyfile"

// startCaddy runs caddy with deploy/caddy/Caddyfile, pointed at the
// verifier and app addresses, as a child process with its admin endpoint
// off and its data and configuration under a temporary directory, and
// returns its base URL.
func startCaddy(t *testing.T, verifierAddr, appAddr string) string {
	t.Helper()
	bin := findProgram(t, "caddy", "caddy", "/usr/bin/caddy", "/usr/local/bin/caddy")
	listen := onFreePort(t, func(listen string) bool {
		dir := t.TempDir()
		conf := proxyExample(t, caddyExample,
			"forward_auth 127.0.0.1:8421 {", "forward_auth "+verifierAddr+" {",
			"reverse_proxy 127.0.0.1:8080\n", "reverse_proxy "+appAddr+"\n",
			"http://:8000 {", "http://"+listen+" {\n\tbind 127.0.0.1")
		// Global options first: no admin endpoint. Caddy keeps its data
		// and last configuration in the XDG directories set below.
		conf = "{\n\tadmin off\n}\n\n" + conf
		file := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
		return runProxy(t, cmd, "http://"+listen, func() string { return "" })
	})
	return "http://" + listen
}

// TestCaddy_ForwardAuth puts a real caddy with the deploy example's
// forward_auth in front of a test application: a valid token reaches it
// with the verifier's identity headers and none of the client's X-Herald-*
// headers, others are refused with the verifier's challenge, and so is a
// token once revoked.
func TestCaddy_ForwardAuth(t *testing.T) { testForwardAuth(t, startCaddy) }

// TestCaddy_NoVerdict: while the verifier gives no verdict caddy passes
// its 503 with Retry-After on, and the app is not called.
func TestCaddy_NoVerdict(t *testing.T) { testNoVerdict(t, startCaddy) }

// TestCaddy_DPoPTarget: behind the deploy example's caddy, a DPoP proof is
// checked against the method and URL the client sent to caddy, whatever
// X-Forwarded-* or X-Original-* headers the client sent.
func TestCaddy_DPoPTarget(t *testing.T) { testDPoPTarget(t, startCaddy) }

// TestCaddy_StaleMarked: behind caddy, requests admitted while the
// verifier is stale (--on-stale=allow) reach the app marked as such.
func TestCaddy_StaleMarked(t *testing.T) { testStaleMarked(t, startCaddy) }

// TestCaddy_VerifierDown: without a verifier caddy answers 502, never the
// app.
func TestCaddy_VerifierDown(t *testing.T) { testVerifierDown(t, startCaddy, http.StatusBadGateway) }
