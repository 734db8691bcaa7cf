package sidecar

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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

// The forward-auth tests run a real proxy (nginx, caddy) with a deploy
// example in front of a test application, each through the same checks.

// startProxy runs a proxy with the deploy example in front of the
// verifier and application at the given addresses, and returns its base
// URL once it answers.
type startProxy func(t *testing.T, verifierAddr, appAddr string) string

// findProgram returns the path of the program name, from PATH or one of
// paths. Without one the test is skipped, or fails under CI (CI=true),
// where .ci/run installs it with apt-get install -y pkg.
func findProgram(t *testing.T, name, pkg string, paths ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("a test of a real %s: skipped under -short", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run installs it (apt-get install -y %s)", name, pkg)
	}
	t.Skipf("%s is not installed (apt-get install -y %s); skipping the forward-auth test", name, pkg)
	return ""
}

// proxyExample reads the deploy example at path with each address it
// names replaced, given as old, new pairs, and fails the test when the
// example no longer has one of them.
func proxyExample(t *testing.T, path string, oldnew ...string) string {
	t.Helper()
	example, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(oldnew...).Replace(string(example))
	for i := 0; i+1 < len(oldnew); i += 2 {
		if !strings.Contains(conf, oldnew[i+1]) {
			t.Fatalf("%s no longer has %q, which the test replaces", path, oldnew[i])
		}
	}
	return conf
}

// runProxy starts cmd, stops it (SIGTERM, then SIGKILL after 10 s) at
// cleanup, and waits until url answers. logs returns what the proxy wrote
// elsewhere than its output, for the failure message if it exits first.
// It reports whether the proxy exited because another process took its
// port between freeAddr and the proxy's start: the caller then starts it
// again on another.
func runProxy(t *testing.T, cmd *exec.Cmd, url string, logs func() string) (portTaken bool) {
	t.Helper()
	name := cmd.Path
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // graceful stop of the proxy and its workers
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	bustest.WaitFor(t, 10*time.Second, func() error {
		select {
		case <-exited:
			said := out.String() + logs()
			if strings.Contains(strings.ToLower(said), "address already in use") {
				portTaken = true
				return nil
			}
			t.Fatalf("%s exited: %v\n%s", name, waitErr, said)
		default:
		}
		// A bounded wait: a process that took the port may accept and
		// never answer.
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return portTaken
}

// onFreePort calls start with a free loopback address until start
// reports that the port was not taken meanwhile, at most three times.
func onFreePort(t *testing.T, start func(listen string) (portTaken bool)) string {
	t.Helper()
	for range 3 {
		listen := freeAddr(t)
		if !start(listen) {
			return listen
		}
		t.Logf("port %s was taken before the proxy started; another", listen)
	}
	t.Fatal("three free ports were taken before the proxy started")
	return ""
}

// admitted sends req, which must be admitted (200), and returns the
// answer's JSON: what the echo application saw.
func admitted[T any](t *testing.T, req *http.Request) T {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var seen T
	if err := json.NewDecoder(resp.Body).Decode(&seen); resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("allowed request: %d, %v", resp.StatusCode, err)
	}
	return seen
}

// echoApp is the application behind the proxy: it answers every request
// with the headers it received, as JSON, and counts the requests.
func echoApp(t *testing.T) (addr string, calls *atomic.Int64) {
	t.Helper()
	calls = new(atomic.Int64)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		httpserve.WriteJSON(w, http.StatusOK, r.Header)
	}))
	t.Cleanup(app.Close)
	return strings.TrimPrefix(app.URL, "http://"), calls
}

// forgedIdentity is what a client sends to pass for someone else: every
// identity header the verifier answers with.
var forgedIdentity = map[string]string{
	verifier.HeaderIssuer: "https://evil.example", verifier.HeaderSubject: "mallory", verifier.HeaderSession: "sess-evil",
	verifier.HeaderClient: "evil", verifier.HeaderScope: "admin", verifier.HeaderTenant: "evil", verifier.HeaderStale: "0",
}

// testForwardAuth: behind the proxy, a valid token reaches the app with the
// verifier's identity headers and none of the client's (also those its
// token has no claim for), others are refused with the verifier's
// challenge, and so is a token once its session is revoked on the bus.
func testForwardAuth(t *testing.T, start startProxy) {
	f := newFixture(t)
	appAddr, calls := echoApp(t)
	base := start(t, f.sc.Addr().String(), appAddr)

	// send makes an allowed request with tok and the forged identity
	// headers, and returns the headers the app saw.
	send := func(t *testing.T, tok string) http.Header {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/orders?id=1", strings.NewReader("body"))
		req.Header.Set("Authorization", "Bearer "+tok)
		for h, v := range forgedIdentity {
			req.Header.Set(h, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var seen http.Header
		err = json.NewDecoder(resp.Body).Decode(&seen)
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("allowed request: %d, %v", resp.StatusCode, err)
		}
		return seen
	}
	// check asserts that the app saw exactly want of each identity header
	// ("": none, or empty), never the client's.
	check := func(t *testing.T, seen http.Header, want map[string]string) {
		t.Helper()
		for h := range forgedIdentity {
			got := seen.Values(h)
			if want[h] == "" {
				if len(got) > 1 || len(got) == 1 && got[0] != "" {
					t.Errorf("app saw %s = %q, want none", h, got)
				}
				continue
			}
			if len(got) != 1 || got[0] != want[h] {
				t.Errorf("app saw %s = %q, want [%q]", h, got, want[h])
			}
		}
	}

	c := baseClaims(time.Now().Add(-time.Second))
	tok := f.EdToken(t, c)
	t.Run("allowed with the verifier's identity", func(t *testing.T) {
		check(t, send(t, tok), map[string]string{
			verifier.HeaderIssuer: testIssuer, verifier.HeaderSubject: "alice", verifier.HeaderTenant: "acme",
			verifier.HeaderSession: c["sid"].(string), verifier.HeaderClient: "web", verifier.HeaderScope: "read write",
		})
	})
	t.Run("client headers for claims the token lacks", func(t *testing.T) {
		bare := baseClaims(time.Now().Add(-time.Second))
		for _, claim := range []string{"tenant", "sid", "client_id", "scope"} {
			delete(bare, claim)
		}
		check(t, send(t, f.EdToken(t, bare)), map[string]string{verifier.HeaderIssuer: testIssuer, verifier.HeaderSubject: "alice"})
	})

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
	if n := calls.Load(); n != 2 {
		t.Fatalf("app called %d times, want 2", n)
	}
}

// testNoVerdict: while the verifier gives no verdict (here: it never caught
// up, the stream does not exist) the proxy answers 503 with Retry-After,
// as the examples promise, and the app is not called.
func testNoVerdict(t *testing.T, start startProxy) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	sc, _ := startSidecar(t, conn, t.TempDir())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the app was called without a verdict")
	}))
	t.Cleanup(app.Close)
	base := start(t, sc.Addr().String(), strings.TrimPrefix(app.URL, "http://"))
	k := newTestKeys(t)
	resp, body := get(t, base+"/orders", k.EdToken(t, baseClaims(time.Now())))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q, body %.80s; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// testDPoPTarget: behind the proxy, a DPoP proof is checked against the
// method and URL the client sent to the proxy, which the example passes to
// the verifier, overwriting or removing whatever the client sent under
// those header names: a proof for GET /public/readonly does not admit
// DELETE /admin/users/42, nor one for https://victim.example/x a POST
// /transfer, whatever X-Forwarded-* or X-Original-* headers say.
func testDPoPTarget(t *testing.T, start startProxy) {
	f := newFixture(t)
	appAddr, calls := echoApp(t)
	base := start(t, f.sc.Addr().String(), appAddr)
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

// testStaleMarked: with --on-stale=allow, a request the verifier admits
// while stale reaches the app marked X-Herald-Stale: true, and once the
// verifier is back the mark is gone, whatever the client sent under that
// name.
func testStaleMarked(t *testing.T, start startProxy) {
	ns := newRestartable(t)
	conn := bustest.Setup(t, ns.srv, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), MaxStaleness: testMaxStaleness, OnStale: StaleAllow})
	waitReady(t, sc)
	appAddr, _ := echoApp(t)
	base := start(t, sc.Addr().String(), appAddr)
	tok := k.EdToken(t, baseClaims(time.Now().Add(-time.Second)))
	stale := func(t *testing.T, want string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set(verifier.HeaderStale, "forged")
		seen := admitted[http.Header](t, req)
		if got := seen.Get(verifier.HeaderStale); got != want {
			t.Fatalf("app saw %s = %q, want %q", verifier.HeaderStale, seen.Values(verifier.HeaderStale), want)
		}
	}
	stale(t, "")
	ns.stop()
	waitStatus(t, sc, "stale but giving verdicts", func(st Status) bool { return st.Stale && st.Verdicts })
	stale(t, "true")
	ns.start()
	waitReady(t, sc)
	stale(t, "")
}

// testVerifierDown: with the verifier unreachable the proxy fails closed:
// the request gets wantStatus (a 503 with Retry-After) and never reaches
// the app.
func testVerifierDown(t *testing.T, start startProxy, wantStatus int) {
	appAddr, calls := echoApp(t)
	base := start(t, freeAddr(t), appAddr) // nothing listens there
	k := newTestKeys(t)
	resp, body := get(t, base+"/orders", k.EdToken(t, baseClaims(time.Now())))
	if resp.StatusCode != wantStatus || calls.Load() != 0 {
		t.Fatalf("status %d, body %.80s, app calls %d; want %d and none", resp.StatusCode, body, calls.Load(), wantStatus)
	}
	if wantStatus == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}
