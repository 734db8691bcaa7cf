package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier/browser"
)

// chromium returns the path of the browser, or skips the test without one;
// under CI=true it fails instead, so CI never passes without running it
// (as the dashboard's browser test in package issuer does).
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("a browser test: skipped under -short")
	}
	for _, name := range []string{"chromium", "/usr/bin/chromium"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI must run the browser session test: apt-get install chromium (.ci/run does)")
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the browser session test")
	return ""
}

// TestBFF_BrowserSession runs 'herald dev' and two 'herald verifier
// --cookie-sessions' replicas sharing a cookie key in front of an app, and
// drives headless Chromium through them: it is sent to the login page,
// signs in, sees the app's page, cannot read the session from JavaScript,
// posts a form; another site's form post with its cookie is refused; and
// when the session is revoked the browser is logged out on both replicas.
// Then it signs in again and out: replaying the old cookie fails.
func TestBFF_BrowserSession(t *testing.T) {
	exe := chromium(t)
	dir := t.TempDir()
	issuerURL, _, devLogs := startDev(t, dir)
	natsURL := regexp.MustCompile(`msg="herald dev ready".* nats=(\S+)`).FindStringSubmatch(devLogs.String())[1]
	tokenFile := filepath.Join(dir, "admin.token")
	admin, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	app := &bffApp{issuerURL: issuerURL, adminToken: strings.TrimSpace(string(admin))}
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)
	keyFile := filepath.Join(dir, "shared-cookie.key")
	if err := os.WriteFile(keyFile, []byte("c2hhcmVkLWJ5LWJvdGgtcmVwbGljYXMtb2YtdGhlLWJyb3dzZXItdGVzdA==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var replicas []string
	for _, id := range []string{"web-1", "web-2"} {
		replicas = append(replicas, startVerifier(t, id, "--nats", natsURL, "--data", filepath.Join(dir, id), "--issuer", issuerURL,
			"--nats-nkey", filepath.Join(dir, "nats-auth", "verifier.nk"), "--nats-ca", filepath.Join(dir, "nats-auth", "ca.pem"),
			"--upstream", appSrv.URL, "--cookie-sessions", "--cookie-key-file", keyFile, "--cookie-login-path", "/login"))
	}
	// The browser calls the first replica by name: localhost is a secure
	// context, where Chromium keeps Secure (and so __Host-) cookies over
	// plain HTTP, as it would behind a TLS front.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(replicas[0], "http://"))
	site := "http://localhost:" + port

	// Another origin of the same site (another port of localhost), so
	// SameSite=Lax still sends the cookie along with its form post: only
	// the sidecar's own check can stop it.
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/attack.js" {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `document.getElementById("attack").submit();`)
			return
		}
		bffPages.ExecuteTemplate(w, "attack", site)
	}))
	t.Cleanup(attacker.Close)
	_, attackerPort, _ := net.SplitHostPort(strings.TrimPrefix(attacker.URL, "http://"))

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-background-networking", true))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // start the browser on bctx, not on a step's shorter context
		t.Fatalf("start %s: %v", exe, err)
	}

	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("%s: %v\npage: %s", what, err, page)
		}
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	sessionCookie := func() *network.Cookie {
		t.Helper()
		res, err := chromedp.Call(bctx, network.GetCookies, network.GetCookiesParams{URLs: []string{site + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Cookies {
			if c.Name == browser.CookieName {
				return c
			}
		}
		return nil
	}
	signIn := func(user string) {
		t.Helper()
		do("open the app", chromedp.Navigate(site+"/"), chromedp.WaitVisible(chromedp.CSS("#user")))
		if got := eval(`location.pathname`); got != "/login" {
			t.Fatalf("without a session the browser is at %s, want /login", got)
		}
		do("sign in as "+user, chromedp.SendKeys(chromedp.CSS("#user"), user), chromedp.Click(chromedp.CSS("#signin")),
			chromedp.WaitVisible(chromedp.CSS("#hello")))
		if got := eval(`document.getElementById("hello").textContent`); got != "Hello "+user {
			t.Fatalf("the app's page says %q, want Hello %s", got, user)
		}
	}
	// replay sends a cookie to a replica as a thief would, and returns
	// the status.
	replay := func(base, value string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/whoami", nil)
		req.Header.Set("Cookie", browser.CookieName+"="+value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	signIn("alice")
	if got := eval(`document.cookie`); got != "theme=dark" {
		t.Fatalf("document.cookie = %q, want only the app's own cookie: JavaScript must not see the session", got)
	}
	c := sessionCookie()
	if c == nil || !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || c.Domain != "localhost" {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Lax, Path=/, host-only", c)
	}
	if code := replay(replicas[1], c.Value); code != http.StatusOK {
		t.Fatalf("the browser's cookie on the other replica: %d, want 200", code)
	}

	do("post a form of the app", chromedp.Click(chromedp.CSS("#send")), chromedp.WaitVisible(chromedp.CSS("#done")))
	if got := eval(`document.getElementById("done").textContent`); got != "transferred by alice" || app.transfers.Load() != 1 {
		t.Fatalf("the app's form post: %q, %d transfers", got, app.transfers.Load())
	}

	do("visit a page of another origin that posts a form to the app", chromedp.Navigate("http://localhost:"+attackerPort+"/"))
	bustest.WaitFor(t, 15*time.Second, func() error {
		if got := eval(`location.pathname + " " + document.body.innerText`); !strings.HasPrefix(got, "/transfer ") || !strings.Contains(got, "cross-origin request refused") {
			return fmt.Errorf("after the forged post the browser shows %q", got)
		}
		return nil
	})
	if n := app.transfers.Load(); n != 1 {
		t.Fatalf("the forged post reached the app: %d transfers", n)
	}

	do("back to the app", chromedp.Navigate(site+"/"), chromedp.WaitVisible(chromedp.CSS("#sid")))
	sid := eval(`document.getElementById("sid").textContent`)
	runCmd(t, "revoke", "--issuer-url", issuerURL, "--admin-token-file", tokenFile, "session", sid, "--reason", "stolen laptop")
	for _, base := range replicas {
		bustest.WaitFor(t, 5*time.Second, func() error {
			if code := replay(base, c.Value); code != http.StatusUnauthorized {
				return fmt.Errorf("revoked session on %s: %d, want 401", base, code)
			}
			return nil
		})
	}
	do("reload after the revocation", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#user")))
	if got := eval(`location.pathname`); got != "/login" || sessionCookie() != nil {
		t.Fatalf("after the revocation the browser is at %s with cookie %+v; want /login and no cookie", got, sessionCookie())
	}

	signIn("bob")
	old := sessionCookie()
	do("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#user")))
	if sessionCookie() != nil {
		t.Fatal("the session cookie survived sign-out")
	}
	if code := replay(site, old.Value); code != http.StatusUnauthorized {
		t.Fatalf("replaying the cookie after sign-out: %d, want 401", code)
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		if code := replay(replicas[1], old.Value); code != http.StatusUnauthorized {
			return fmt.Errorf("replaying the cookie on the other replica: %d, want 401", code)
		}
		return nil
	})
}

// TestRun_VerifierCookieFlags checks that cookie sessions are refused
// without proxy mode, also when switched on from the environment, and with
// a key file others can read.
func TestRun_VerifierCookieFlags(t *testing.T) {
	dir := t.TempDir()
	base := []string{"verifier", "--nats", "nats://127.0.0.1:1", "--http", "127.0.0.1:0", "--data", filepath.Join(dir, "v")}
	if err := run(t.Context(), append(base, "--cookie-sessions"), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "proxy mode") {
		t.Fatalf("--cookie-sessions without --upstream: %v, want an error naming proxy mode", err)
	}
	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, []byte("c2hhcmVkLWJ5LWJvdGgtcmVwbGljYXMtb2YtdGhlLWJyb3dzZXItdGVzdA==\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_COOKIE_SESSIONS", "true")
	err := run(t.Context(), append(base, "--upstream", "http://127.0.0.1:1", "--cookie-key-file", open), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "lets others read it") {
		t.Fatalf("HERALD_COOKIE_SESSIONS with a world-readable key: %v, want the key refused", err)
	}
}
