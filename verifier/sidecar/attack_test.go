package sidecar

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/verifier"
)

// TestAttack_Sidecar runs the suite against a running sidecar's
// /v1/verify, as nginx auth_request or Envoy ext_authz would call it, and
// checks the sidecar still answers afterwards.
func TestAttack_Sidecar(t *testing.T) {
	f := newFixture(t)
	list := attacks(t, f.testKeys, time.Now())
	verify := func(t *testing.T, token string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", f.sc.URL()+"/v1/verify", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /v1/verify: %v", err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	took := runAttacks(t, list, func(t *testing.T, a attack) error {
		if a.noHTTP {
			t.Skip("no HTTP request carries this token; see TestSidecar_HeaderAbuse")
		}
		code, www := verify(t, a.token)
		switch {
		case code == http.StatusOK:
			return nil
		case code != http.StatusUnauthorized:
			t.Fatalf("status %d, want 200 or 401", code)
		}
		_, desc, ok := strings.Cut(www, `error_description="`)
		if !ok || !strings.HasPrefix(www, `Bearer realm="herald", error="invalid_token"`) {
			t.Fatalf("WWW-Authenticate %q: want an RFC 6750 invalid_token challenge", www)
		}
		return fmt.Errorf("%s: %w", www, &verifier.Error{Reason: strings.TrimSuffix(desc, `"`)})
	})
	t.Logf("%d attacks over HTTP in %v", len(list), took)
	if took > 10*time.Second {
		t.Errorf("the suite took %v over HTTP: some token is expensive to refuse", took)
	}
	if code, www := verify(t, f.edToken(t, baseClaims(time.Now()))); code != http.StatusOK {
		t.Fatalf("a valid token after the suite: %d %s", code, www)
	}
	if st := f.sc.Status(); !st.Ready {
		t.Fatalf("sidecar not ready after the suite: %+v", st)
	}
}

// TestSidecar_HeaderAbuse sends what no well-behaved client sends: an
// Authorization header of 1 MiB, line breaks inside a header value, two
// Authorization headers. The server answers each, keeps serving, and
// bounds headers before the verifier sees them.
func TestSidecar_HeaderAbuse(t *testing.T) {
	f := newFixture(t)
	addr := strings.TrimPrefix(f.sc.URL(), "http://")
	valid := f.edToken(t, baseClaims(time.Now()))
	raw := func(t *testing.T, req string) *http.Response {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		// The server stops reading an oversized request: write from
		// another goroutine and read the answer meanwhile.
		go func() { _, _ = io.WriteString(conn, req) }()
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		resp.Body.Close()
		return resp
	}
	tests := []struct {
		name string
		req  string
		code int
	}{
		{"1 MiB Authorization header", "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
			strings.Repeat("A", 1<<20) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"1 MiB of small headers", "GET /v1/verify HTTP/1.1\r\nHost: x\r\n" +
			strings.Repeat("X-A: b\r\n", (1<<20)/8) + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"token of 16 KiB, over MaxTokenSize", "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
			strings.Repeat("A", 16<<10) + "\r\n\r\n", http.StatusUnauthorized},
		{"carriage return inside the value", "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
			valid[:50] + "\r" + valid[50:] + "\r\n\r\n", http.StatusBadRequest},
		{"line feed inside the value", "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
			valid[:50] + "\n" + valid[50:] + "\r\n\r\n", http.StatusBadRequest},
		{"NUL inside the value", "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
			valid[:50] + "\x00" + valid[50:] + "\r\n\r\n", http.StatusBadRequest},
		{"two Authorization headers", "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + valid +
			"\r\nAuthorization: Bearer " + valid + "\r\n\r\n", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp := raw(t, tt.req); resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.code)
			}
		})
	}
	resp := raw(t, "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+valid+"\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a valid token afterwards: status %d", resp.StatusCode)
	}
}
