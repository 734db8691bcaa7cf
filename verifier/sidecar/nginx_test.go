package sidecar

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// nginxExample is the deploy example the nginx tests run.
const nginxExample = "../../deploy/nginx/herald.conf"

// startNginx runs nginx with deploy/nginx/herald.conf, pointed at the
// verifier and app addresses, as a child process with everything under a
// temporary directory, and returns its base URL.
func startNginx(t *testing.T, verifierAddr, appAddr string) string {
	t.Helper()
	bin := findProgram(t, "nginx", "nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx")
	listen := onFreePort(t, func(listen string) bool {
		dir := t.TempDir()
		conf := proxyExample(t, nginxExample,
			"server 127.0.0.1:8421;", "server "+verifierAddr+";",
			"server 127.0.0.1:8080;", "server "+appAddr+";",
			"listen 8000;", "listen "+listen+";")
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
		return runProxy(t, cmd, "http://"+listen, func() string {
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return string(logs)
		})
	})
	return "http://" + listen
}

// TestNginx_AuthRequest puts a real nginx with the deploy example's
// auth_request in front of a test application: a valid token reaches it
// with the verifier's identity headers (not the client's), others are
// refused with the verifier's challenge, and so is a token once revoked.
func TestNginx_AuthRequest(t *testing.T) { testForwardAuth(t, startNginx) }

// TestNginx_NoVerdict: while the verifier gives no verdict nginx answers
// 503 with Retry-After, and the app is not called.
func TestNginx_NoVerdict(t *testing.T) { testNoVerdict(t, startNginx) }

// TestNginx_DPoPTarget: behind the deploy example's nginx, a DPoP proof is
// checked against the method and URL the client sent to nginx, whatever
// X-Forwarded-* or X-Original-* headers the client sent.
func TestNginx_DPoPTarget(t *testing.T) { testDPoPTarget(t, startNginx) }

// TestNginx_StaleMarked: behind nginx, requests admitted while the
// verifier is stale (--on-stale=allow) reach the app marked as such.
func TestNginx_StaleMarked(t *testing.T) { testStaleMarked(t, startNginx) }

// TestNginx_VerifierDown: without a verifier nginx answers 503 with
// Retry-After (the example's @herald_unavailable), never the app.
func TestNginx_VerifierDown(t *testing.T) {
	testVerifierDown(t, startNginx, http.StatusServiceUnavailable)
}
