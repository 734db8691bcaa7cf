package issuer_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

func TestDashboard_ServedWithStrictHeaders(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	tests := []struct {
		path  string
		ctype string
	}{
		{"/", "text/html"},
		{"/dashboard/app.js", "text/javascript"},
		{"/dashboard/app.css", "text/css"},
		{"/dashboard/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		resp, body := get(t, svc.URL()+tt.path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d, want 200", tt.path, resp.StatusCode)
		}
		h := resp.Header
		if got := h.Get("Content-Type"); !strings.HasPrefix(got, tt.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", tt.path, got, tt.ctype)
		}
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", tt.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-") {
			t.Errorf("GET %s: CSP %q allows unsafe sources", tt.path, csp)
		}
		if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", tt.path, got)
		}
		if got := h.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q, want DENY", tt.path, got)
		}
		if tt.path == "/" {
			// No inline script: every script element loads a file of ours.
			for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(string(body), -1) {
				if !strings.Contains(tag, `src="/dashboard/`) {
					t.Errorf("page has an inline script: %s", tag)
				}
			}
			if strings.Contains(string(body), "://") {
				t.Errorf("page refers to another origin")
			}
		}
	}
	for _, path := range []string{"/dashboard/", "/dashboard/missing.js", "/dashboard/..%2fdashboard.go", "/dashboard/..%2fx.js", "/dashboard/%2e%2e%2fx.css", "/index.html"} {
		if resp, _ := get(t, svc.URL()+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
		}
	}
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// chromium returns the path of the browser, or skips the test without one;
// under CI=true it fails instead, so CI never passes without running it.
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
		t.Fatal("chromium is not installed, and CI must run the dashboard test: apt-get install chromium (.ci/run does)")
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the dashboard's browser test")
	return ""
}

// TestDashboard_RevokeSessionInChromium signs in to the dashboard in
// headless Chromium, revokes a session through the form and its
// confirmation step, sees the revocation in the live feed, and checks on a
// verifier that the session's token is refused. Then it cuts the page off
// the issuer while another session is revoked: the feed reconnects and
// shows that revocation too.
func TestDashboard_RevokeSessionInChromium(t *testing.T) {
	exe := chromium(t)
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	victim := createSession(t, svc, issuer.SessionRequest{Subject: "alice", Tenant: "acme"})
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, victim.AccessToken, 200, "") })

	link := newLink(t, svc.Addr().String()) // the browser reaches the issuer through it

	b := openBrowser(t, exe)
	bctx, do, text := b.ctx, b.do, b.text
	do("open the dashboard",
		chromedp.Navigate("http://"+link.addr()+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")))

	do("sign in with a wrong credential",
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-admin-token"),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	if got := text("#signin-error"); !strings.Contains(got, "401") {
		t.Errorf("sign-in error %q, want it to name the 401", got)
	}

	do("sign in",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("token").value = ""`),
		chromedp.SendKeys(chromedp.CSS("#token"), adminToken),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#app")))
	where, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href + " " + document.cookie`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(where, adminToken) {
		t.Errorf("the credential is in the URL or a cookie: %s", where)
	}

	do("see the verifier in the fleet",
		chromedp.WaitVisible(chromedp.CSS(`#fleet tr[data-verifier="`+sc.ID()+`"][data-state="ready"]`)))
	do("see the session's creation in the feed's backlog",
		chromedp.WaitVisible(chromedp.CSS(`#feed li[data-type="session.created"]`)))

	do("review the revocation",
		chromedp.SetValue(chromedp.CSS("#kind"), "session"),
		chromedp.SendKeys(chromedp.CSS("#value"), victim.SessionID),
		chromedp.SendKeys(chromedp.CSS("#reason"), "stolen laptop"),
		chromedp.Click(chromedp.CSS("#revoke")),
		chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := text("#blast"); !strings.Contains(got, "1 live session") {
		t.Errorf("blast radius %q, want 1 live session", got)
	}
	if err := wantVerdict(t, sc, victim.AccessToken, 200, ""); err != nil {
		t.Fatalf("after the dry run: %v", err)
	}

	do("confirm the revocation",
		chromedp.Click(chromedp.CSS("#confirm")),
		chromedp.WaitVisible(chromedp.CSS("#result.ok")))
	if got := text("#result"); !strings.Contains(got, "seq") {
		t.Errorf("result %q, want the revocation's seq", got)
	}

	revoked := `#feed li[data-type="revocation"][data-value="` + victim.SessionID + `"]`
	do("see the revocation in the live feed", chromedp.WaitVisible(chromedp.CSS(revoked)))
	if got := text(revoked); !strings.Contains(got, "stolen laptop") || !strings.Contains(got, "admin") {
		t.Errorf("feed entry %q, want the reason and the actor", got)
	}
	if got := text("#rpm-total"); got != "1" {
		t.Errorf("revocations in the last 30 minutes = %s, want 1", got)
	}
	if path := os.Getenv("HERALD_DASHBOARD_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, victim.AccessToken, 401, "revoked") })

	// Cut the page off the issuer and revoke meanwhile: the feed
	// reconnects with Last-Event-ID and shows what it missed.
	other := createSession(t, svc, issuer.SessionRequest{Subject: "bob"})
	link.cut(true)
	do("lose the event stream", chromedp.WaitVisible(chromedp.CSS("#stream-status.down")))
	revoke(t, svc, "session", other.SessionID)
	link.cut(false)
	do("see what was missed in the feed",
		chromedp.WaitVisible(chromedp.CSS(`#feed li[data-type="revocation"][data-value="`+other.SessionID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#stream-status.live")))
	n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#feed li[data-type="revocation"]').length`))
	if err != nil || n != 2 {
		t.Errorf("revocations in the feed = %d (%v), want 2", n, err)
	}

	do("sign out",
		chromedp.Click(chromedp.CSS("#signout")),
		chromedp.WaitVisible(chromedp.CSS("#signin-panel")))
	kept, err := chromedp.Run(bctx, chromedp.Evaluate[int](`sessionStorage.length`))
	if err != nil {
		t.Fatal(err)
	}
	if kept != 0 {
		t.Errorf("session storage holds %d items after sign-out, want 0", kept)
	}

	b.checkConsole()
}

// browser is headless Chromium driven through chromedp, collecting what
// the page writes to the console: an exception or a
// Content-Security-Policy violation fails the test (checkConsole).
type browser struct {
	t            *testing.T
	ctx          context.Context
	mu           sync.Mutex
	problems     []string
	stopConsole  func()
	consoleDone  chan struct{}
	consoleCheck sync.Once
}

// openBrowser starts the Chromium at exe for the test; it ends with it.
func openBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	b := &browser{t: t, ctx: bctx, consoleDone: make(chan struct{})}
	consoleCtx, stopConsole := context.WithCancel(bctx)
	b.stopConsole = stopConsole
	messages := chromedp.Console(consoleCtx)
	go func() {
		defer close(b.consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { stopConsole(); <-b.consoleDone })
	return b
}

// do runs one step with its own deadline, and on failure shows what the
// page says.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	sctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\npage:\n%s", what, err, pageText(b.ctx))
	}
}

// text returns the text of the element sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	sctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// checkConsole stops collecting the console and fails the test for what
// it collected.
func (b *browser) checkConsole() {
	b.stopConsole()
	<-b.consoleDone
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("page console: %s", p)
	}
}

// signIn opens the dashboard at addr and signs in with the admin token.
func (b *browser) signIn(addr string) {
	b.t.Helper()
	b.do("open the dashboard",
		chromedp.Navigate("http://"+addr+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do("sign in",
		chromedp.SendKeys(chromedp.CSS("#token"), adminToken),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#app")))
}

// link is a TCP proxy to the issuer that the test can cut, to make the
// page lose its connections.
type link struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newLink(t *testing.T, target string) *link {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: target, conns: make(map[net.Conn]bool)}
	l.wg.Add(1)
	go l.accept()
	t.Cleanup(func() {
		ln.Close()
		l.cut(true)
		l.wg.Wait()
	})
	return l
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) accept() {
	defer l.wg.Done()
	for {
		in, err := l.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", l.target)
		l.mu.Lock()
		if err != nil || l.down {
			l.mu.Unlock()
			in.Close()
			if out != nil {
				out.Close()
			}
			continue
		}
		l.conns[in], l.conns[out] = true, true
		l.wg.Add(2)
		l.mu.Unlock()
		go l.pipe(in, out)
		go l.pipe(out, in)
	}
}

func (l *link) pipe(dst, src net.Conn) {
	defer l.wg.Done()
	_, _ = io.Copy(dst, src) // ends when either side closes
	dst.Close()
	src.Close()
	l.mu.Lock()
	delete(l.conns, dst)
	delete(l.conns, src)
	l.mu.Unlock()
}

// cut closes every connection and refuses new ones while down.
func (l *link) cut(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = down
	if down {
		for c := range l.conns {
			c.Close()
		}
	}
}

// pageText returns the visible text of the page, to show why a step failed.
func pageText(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return s
}
