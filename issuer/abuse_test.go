package issuer

// Abuse of the admin API: guessing credentials,
// oversized bodies, slow clients. Constant-time comparison is not tested
// here but holds by construction: the bootstrap token is compared with
// subtle.ConstantTimeCompare on SHA-256 hashes, named credentials are
// found by the hash of the presented token (so lookup time says nothing
// about how close a guess was), and client secrets are bcrypt hashes, an
// unknown client costing a comparison with a dummy hash (clients.go).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip, a source of its own for the issuer's limits.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// do sends a request with an optional bearer token and returns the status,
// the Retry-After header and the body.
func do(t *testing.T, c *http.Client, method, url, bearer, contentType string, body io.Reader) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), data
}

// TestAdminAuth_FailuresLimited checks the limit on failed admin
// authentication: authFailureBurst wrong tokens from one source, then 429
// with Retry-After, without the token being checked, even a right one;
// one more attempt every authFailureEvery; right tokens neither count nor
// reset; requests without a token do not count; other sources are not
// affected; and the endpoints that also take client authentication give
// no way around it.
func TestAdminAuth_FailuresLimited(t *testing.T) {
	var offset atomic.Int64 // the issuer's clock runs ahead of the wall clock by this
	advance := func(d time.Duration) { offset.Add(int64(d)) }
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), func(s *Service) {
		s.cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	mallory, admin := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	list := func(c *http.Client, token string) (int, string) {
		code, retry, _ := do(t, c, "GET", svc.URL()+"/v1/clients", token, "", nil)
		return code, retry
	}
	want := func(c *http.Client, token string, wantCode int) string {
		t.Helper()
		code, retry := list(c, token)
		if code != wantCode {
			t.Fatalf("GET /v1/clients = %d, want %d", code, wantCode)
		}
		return retry
	}
	introspect := func(c *http.Client, token string) int {
		code, _, _ := do(t, c, "POST", svc.URL()+"/oauth2/introspect", token,
			"application/x-www-form-urlencoded", strings.NewReader("token=x"))
		return code
	}

	for range 3 * authFailureBurst {
		want(mallory, "", http.StatusUnauthorized) // no credential: nothing guessed, not counted
	}
	bustest.WaitFor(t, 10*time.Second, func() error { // 503 until it has caught up with the stream
		if code := introspect(mallory, fuzzAdminToken); code != http.StatusOK {
			return fmt.Errorf("introspection with the admin token = %d, want 200", code)
		}
		return nil
	})
	for range authFailureBurst - 1 {
		want(mallory, "guess", http.StatusUnauthorized)
	}
	want(mallory, fuzzAdminToken, http.StatusOK) // neither counted nor a reset
	want(mallory, "guess", http.StatusUnauthorized)

	retry := want(mallory, "guess", http.StatusTooManyRequests)
	if s, err := strconv.Atoi(retry); err != nil || s < 1 || s > int(authFailureEvery/time.Second) {
		t.Fatalf("Retry-After %q, want 1 to %d seconds", retry, int(authFailureEvery/time.Second))
	}
	want(mallory, fuzzAdminToken, http.StatusTooManyRequests) // not even checked
	if code := introspect(mallory, fuzzAdminToken); code != http.StatusUnauthorized {
		t.Fatalf("introspection with the admin token while over the limit = %d, want 401: an oracle around the limit", code)
	}
	want(admin, fuzzAdminToken, http.StatusOK) // another source
	want(admin, "typo", http.StatusUnauthorized)

	advance(authFailureEvery) // one more attempt
	want(mallory, "guess", http.StatusUnauthorized)
	want(mallory, "guess", http.StatusTooManyRequests)
	advance(authFailureEvery)
	want(mallory, fuzzAdminToken, http.StatusOK)
	want(mallory, "guess", http.StatusUnauthorized) // the right token gave its attempt back
	want(mallory, "guess", http.StatusTooManyRequests)

	advance(authFailureBurst * authFailureEvery) // a full budget again
	for range authFailureBurst {
		want(mallory, "guess", http.StatusUnauthorized)
	}
	want(mallory, "guess", http.StatusTooManyRequests)
}

// TestAuthLimiter_BoundedMemory checks that the limiter never tracks more
// than authSourcesMax sources (ratelimit.TestSource checks how requests
// are grouped into sources).
func TestAuthLimiter_BoundedMemory(t *testing.T) {
	now := time.Unix(1795430832, 0)
	l := newAuthLimiter(func() time.Time { return now })
	for i := range authSourcesMax + 100 {
		l.Reserve("s" + strconv.Itoa(i))
	}
	if n := l.Len(); n > authSourcesMax {
		t.Fatalf("%d sources tracked, want at most %d", n, authSourcesMax)
	}
}

// TestAdmin_OversizedBodies sends bodies over each bound: the issuer
// answers 413 (JSON) or 400 (forms) after reading at most the bound, and
// keeps serving.
func TestAdmin_OversizedBodies(t *testing.T) {
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), nil)
	c := http.DefaultClient
	big := func(n int) io.Reader {
		return io.MultiReader(strings.NewReader(`{"sub":"`), bytes.NewReader(bytes.Repeat([]byte("a"), n)), strings.NewReader(`"}`))
	}
	tests := []struct {
		name, path, ctype string
		body              io.Reader
		code              int
	}{
		{"session", "/v1/sessions", "application/json", big(maxBodyBytes), http.StatusRequestEntityTooLarge},
		{"client", "/v1/clients", "application/json", big(maxBodyBytes), http.StatusRequestEntityTooLarge},
		{"credential", "/v1/credentials", "application/json", big(maxBodyBytes), http.StatusRequestEntityTooLarge},
		{"revocation", "/v1/revocations", "application/json", big(maxBulkBytes), http.StatusRequestEntityTooLarge},
		{"nesting bomb", "/v1/sessions", "application/json", strings.NewReader(`{"sub":` + strings.Repeat("[", 60<<10)), http.StatusBadRequest},
		{"token form", "/oauth2/token", "application/x-www-form-urlencoded",
			strings.NewReader("grant_type=refresh_token&refresh_token=" + strings.Repeat("a", maxBodyBytes)), http.StatusBadRequest},
		{"introspection form", "/oauth2/introspect", "application/x-www-form-urlencoded",
			strings.NewReader("token=" + strings.Repeat("a", maxBodyBytes)), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := do(t, c, "POST", svc.URL()+tt.path, fuzzAdminToken, tt.ctype, tt.body)
			if code != tt.code {
				t.Fatalf("status %d (%s), want %d", code, body, tt.code)
			}
			if !bytes.Contains(body, []byte(`"error_description"`)) {
				t.Fatalf("answer %s: want an API error", body)
			}
		})
	}
	if code, _, body := do(t, c, "POST", svc.URL()+"/v1/sessions", fuzzAdminToken, "application/json",
		strings.NewReader(`{"sub":"alice"}`)); code != http.StatusOK {
		t.Fatalf("a session afterwards: %d %s", code, body)
	}
}

// TestIssuer_SlowlorisCutOff trickles a request header to the issuer's
// own server and checks it is cut off after its header timeout, as
// httpserve.TestServe_SlowlorisCutOff does for Serve, which both servers
// run. It takes that timeout (5s), so it runs in parallel with the rest.
func TestIssuer_SlowlorisCutOff(t *testing.T) {
	t.Parallel()
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), nil)
	conn, err := net.Dial("tcp", svc.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "POST /v1/revocations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn) // returns when the server closes
	}()
	trickle := time.NewTicker(100 * time.Millisecond)
	defer trickle.Stop()
	for {
		select {
		case <-closed:
			t.Logf("cut off after %v", time.Since(start))
			return
		case <-trickle.C:
			if _, err := io.WriteString(conn, "x"); err != nil {
				<-closed
				return
			}
		case <-ctx.Done():
			t.Fatalf("the issuer still reads a trickled header after %v", time.Since(start))
		}
	}
}
