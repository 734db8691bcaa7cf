package sidecar

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSidecar_HeaderAbuse sends what no well-behaved client sends: an
// Authorization header of 1 MiB, line breaks inside a header value, two
// Authorization headers. The server answers each, keeps serving, and
// bounds headers before the verifier sees them.
func TestSidecar_HeaderAbuse(t *testing.T) {
	f := newFixture(t)
	addr := strings.TrimPrefix(f.sc.URL(), "http://")
	valid := f.EdToken(t, baseClaims(time.Now()))
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
