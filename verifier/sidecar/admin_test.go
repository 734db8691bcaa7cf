package sidecar

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
)

// TestProxy_OwnEndpointsOffTheAppListener: in proxy mode the application's
// listener is the application's: /v1/status, /metrics, /v1/verify,
// /healthz and /readyz there are the upstream's paths (behind the token
// check), and the sidecar's own endpoints, which tell the upstream URL,
// event keys and denylist size, answer only on the admin listener.
func TestProxy_OwnEndpointsOffTheAppListener(t *testing.T) {
	f, up := newProxyFixture(t)
	tok := f.EdToken(t, baseClaims(time.Now()))
	own := []string{"/v1/status", "/metrics", "/v1/verify", "/healthz", "/readyz"}
	for _, path := range own {
		before := up.calls.Load()
		if resp, body := get(t, f.sc.URL()+path, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a token on the app's listener = %d %.100s, want 401 (an upstream path)", path, resp.StatusCode, body)
		}
		resp, body := get(t, f.sc.URL()+path, tok)
		var echo struct{ Path string }
		if resp.StatusCode != 200 || json.Unmarshal(body, &echo) != nil || echo.Path != path || up.calls.Load() != before+1 {
			t.Errorf("GET %s with a token on the app's listener = %d %.100s, want the upstream's answer", path, resp.StatusCode, body)
		}
	}
	if f.sc.AdminURL() == "" || f.sc.AdminURL() == f.sc.URL() {
		t.Fatalf("admin URL %q, app URL %q: want a listener of its own", f.sc.AdminURL(), f.sc.URL())
	}
	before := up.calls.Load()
	for _, path := range []string{"/v1/status", "/healthz", "/readyz", "/metrics"} {
		resp, body := get(t, f.sc.AdminURL()+path, "")
		if resp.StatusCode != 200 && (path != "/metrics" || resp.StatusCode != 404) { // no exporter configured here
			t.Errorf("GET %s on the admin listener = %d %.100s, want the sidecar's answer", path, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, f.sc.AdminURL()+"/v1/verify", tok); resp.StatusCode != 200 || resp.Header.Get(verifier.HeaderSubject) != "alice" {
		t.Errorf("verify on the admin listener = %d", resp.StatusCode)
	}
	if up.calls.Load() != before {
		t.Error("a request to the admin listener reached the upstream")
	}
}

// lockedBuffer is a log sink safe for the sidecar's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProxy_AdminListenerInReadyLine: with --http on port 0 the admin
// listener picks a loopback port too, and the ready line names both.
func TestProxy_AdminListenerInReadyLine(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	logs := &lockedBuffer{}
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), Upstream: "http://127.0.0.1:9",
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if host, port, _ := net.SplitHostPort(strings.TrimPrefix(sc.AdminURL(), "http://")); host != "127.0.0.1" || port == "8422" {
		t.Errorf("admin URL %s: want loopback on a picked port (HTTPAddr has port 0)", sc.AdminURL())
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `msg="verifier ready"`) {
				if !strings.Contains(line, " http="+sc.URL()+" ") || !strings.Contains(line, " admin_http="+sc.AdminURL()) {
					t.Fatalf("ready line %q: want http=%s and admin_http=%s", line, sc.URL(), sc.AdminURL())
				}
				return nil
			}
		}
		return errors.New("no ready line yet")
	})
}
