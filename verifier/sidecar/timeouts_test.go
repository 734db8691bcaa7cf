package sidecar

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/verifier/browser"
)

// slowUpload sends a POST to path on addr announcing a 100000-byte body and
// then trickles it a byte every 100 ms, and returns how long the server
// kept the connection open, or limit if it was still open then.
func slowUpload(t *testing.T, addr, path, auth string, limit time.Duration) time.Duration {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	hdr := "POST " + path + " HTTP/1.1\r\nHost: app.example\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n"
	if auth != "" {
		hdr += "Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(conn, hdr+"\r\n"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn) // returns when the server closes
	}()
	trickle := time.NewTicker(100 * time.Millisecond)
	defer trickle.Stop()
	stop := time.After(limit)
	for {
		select {
		case <-closed:
			return time.Since(start)
		case <-trickle.C:
			if _, err := io.WriteString(conn, "a"); err != nil {
				<-closed
				return time.Since(start)
			}
		case <-stop:
			return limit
		}
	}
}

// TestBFF_AnonymousRequestsKeepTheTimeouts: in cookie mode a request on a
// public path without a session is held to the server's read timeout, as
// any unauthenticated client is; only requests a token or session admitted
// may outlast it.
func TestBFF_AnonymousRequestsKeepTheTimeouts(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "read %d bytes\n", n)
	}))
	t.Cleanup(app.Close)
	const bound = time.Second
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), Upstream: app.URL,
		Cookies:  &browser.Config{IssuerURL: "http://127.0.0.1:9", PublicPaths: []string{"/login"}},
		Timeouts: httpserve.Timeouts{ReadHeader: bound, Read: bound, Write: 2 * bound}})
	waitReady(t, sc)

	if took := slowUpload(t, sc.Addr().String(), "/login", "", 4*bound); took >= 4*bound {
		t.Fatalf("anonymous slow POST /login still open after %v (read timeout %v)", took, bound)
	} else {
		t.Logf("anonymous slow POST /login cut off after %v (read timeout %v)", took, bound)
	}
	// A token-admitted upload may outlast the bound.
	tok := k.EdToken(t, baseClaims(time.Now()))
	if took := slowUpload(t, sc.Addr().String(), "/upload", "Bearer "+tok, 2*bound+bound/2); took < 2*bound {
		t.Fatalf("a token-admitted slow upload was cut off after %v, within the read timeout's reach", took)
	}
}
