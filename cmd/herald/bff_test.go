package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/browser"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// The browser session tests run the real issuer, real verifier sidecars in
// cookie mode on one embedded JetStream server, and bffApp, a web
// application behind them.

const bffAdmin = "bff-test-admin-token-of-at-least-32-bytes"

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// bffApp is the application behind the sidecars. Its login handler
// creates a Herald session with the admin credential and hands the refresh
// token to the sidecar in the Herald-Session header; its pages show what
// the sidecar told it.
type bffApp struct {
	issuerURL, adminToken string
	transfers             atomic.Int64
}

var bffPages = template.Must(template.New("").Parse(`
{{define "login"}}<!doctype html><title>Sign in</title>
<form id="login" method="post" action="/login"><input id="user" name="user"><input id="tenant" name="tenant" value="acme"><button id="signin">Sign in</button></form>{{end}}
{{define "home"}}<!doctype html><title>Home</title>
<p id="hello">Hello {{.Sub}}</p><p id="sid">{{.SID}}</p>
<form id="transfer" method="post" action="/transfer"><input type="hidden" name="csrf" value="{{.CSRF}}"><button id="send">Send</button></form>
<form id="logout" method="post" action="/.herald/logout"><button id="signout">Sign out</button></form>{{end}}
{{define "done"}}<!doctype html><p id="done">transferred by {{.}}</p>{{end}}
{{define "attack"}}<!doctype html><title>Win a prize</title>
<form id="attack" method="post" action="{{.}}/transfer"><input name="amount" value="1000"></form>
<script src="/attack.js"></script>{{end}}`))

func (a *bffApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sub, sid, csrf := r.Header.Get(verifier.HeaderSubject), r.Header.Get(verifier.HeaderSession), r.Header.Get(browser.HeaderCSRF)
	switch r.Method + " " + r.URL.Path {
	case "GET /login":
		bffPages.ExecuteTemplate(w, "login", nil)
	case "POST /login":
		r.ParseForm()
		body, _ := json.Marshal(issuer.SessionRequest{Subject: r.PostForm.Get("user"), Tenant: r.PostForm.Get("tenant")})
		req, _ := http.NewRequestWithContext(r.Context(), "POST", a.issuerURL+"/v1/sessions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var sess issuer.SessionResponse
		if err := json.NewDecoder(resp.Body).Decode(&sess); err != nil || resp.StatusCode != 200 {
			http.Error(w, fmt.Sprintf("create session: %d %v", resp.StatusCode, err), http.StatusBadGateway)
			return
		}
		w.Header().Set(browser.HeaderHandoff, sess.RefreshToken)
		http.SetCookie(w, &http.Cookie{Name: "theme", Value: "dark", Path: "/"}) // the app's own, readable by scripts
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case "GET /":
		bffPages.ExecuteTemplate(w, "home", map[string]string{"Sub": sub, "SID": sid, "CSRF": csrf})
	case "POST /transfer":
		a.transfers.Add(1)
		bffPages.ExecuteTemplate(w, "done", sub)
	case "GET /whoami":
		json.NewEncoder(w).Encode(map[string]string{"sub": sub, "sid": sid, "csrf": csrf, "tenant": r.Header.Get(verifier.HeaderTenant),
			"cookie": r.Header.Get("Cookie"), "authorization": r.Header.Get("Authorization")})
	case "POST /login/bogus":
		// A handoff of a refresh token the issuer does not know.
		w.Header().Set(browser.HeaderHandoff, "hrt_not-a-real-refresh-token")
		fmt.Fprint(w, "signed in")
	case "GET /plant":
		// A compromised or careless app cannot set the session cookie.
		w.Header().Add("Set-Cookie", browser.CookieName+"=forged; Path=/; Secure")
	case "GET /events":
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond): // a live feed, not test synchronisation
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// bffStack is an issuer, the app and sidecars in cookie mode sharing one
// cookie key.
type bffStack struct {
	bus     *natsserver.Server
	conn    *bus.Conn // the issuer's
	svc     *issuer.Service
	app     *bffApp
	appURL  string
	keyFile string
	scs     []*sidecar.Sidecar
	shift   atomic.Int64 // added to the sidecars' session clock
	clock   atomic.Int64 // added to the issuer's and the sidecars' token clocks
}

func newBFFStack(t *testing.T, replicas int, accessTTL time.Duration, cookies browser.Config) *bffStack {
	t.Helper()
	st := &bffStack{bus: bustest.RunServer(t)}
	st.conn = bustest.Connect(t, st.bus)
	svc, err := issuer.Open(t.Context(), issuer.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: bffAdmin,
		Logger: quietLog, ClientSecretCost: 4, AccessTTL: accessTTL, Now: st.now}, st.conn)
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, svc.Run, func() { svc.Close() })
	st.svc = svc
	st.app = &bffApp{issuerURL: svc.URL(), adminToken: bffAdmin}
	app := httptest.NewServer(st.app)
	t.Cleanup(app.Close)
	st.appURL = app.URL

	st.keyFile = filepath.Join(t.TempDir(), "cookie.key")
	if err := os.WriteFile(st.keyFile, []byte("c2VjcmV0LXNoYXJlZC1ieS10aGUtcmVwbGljYXMtb2YtdGhpcy10ZXN0Cg==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range replicas {
		st.addReplica(t, cookies)
	}
	return st
}

// now is the issuer's and the sidecars' token clock.
func (st *bffStack) now() time.Time { return time.Now().Add(time.Duration(st.clock.Load())) }

// addReplica starts one more sidecar with cookies (the stack's issuer
// unless cookies name another URL) and waits until it is ready.
func (st *bffStack) addReplica(t *testing.T, cookies browser.Config) *sidecar.Sidecar {
	t.Helper()
	if cookies.IssuerURL == "" {
		cookies.IssuerURL = st.svc.URL()
	}
	cookies.KeyFile = st.keyFile
	cookies.Now = func() time.Time { return time.Now().Add(time.Duration(st.shift.Load())) }
	if cookies.LoginPath == "" {
		cookies.LoginPath = "/login"
	}
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: st.svc.IssuerURL(), Audience: issuer.DefaultAudience, Now: st.now},
		DataDir:  t.TempDir(), HTTPAddr: "127.0.0.1:0", Upstream: st.appURL, Cookies: &cookies, Logger: quietLog,
	}, bustest.Connect(t, st.bus))
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, sc.Run, func() { sc.Close() })
	if err := sc.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	st.scs = append(st.scs, sc)
	return sc
}

// runInBackground runs fn until the test ends, then calls closeFn.
func runInBackground(t *testing.T, fn func(context.Context) error, closeFn func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		closeFn()
	})
}

// reply is an answer the test client got.
type reply struct {
	code   int
	header http.Header
	body   string
}

// cookie returns the session cookie the answer sets: its value, whether
// it deletes it, and whether there is one.
func (r reply) cookie() (value string, cleared, ok bool) {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == browser.CookieName {
			value, cleared, ok = c.Value, c.MaxAge < 0, true
		}
	}
	return value, cleared, ok
}

func (r reply) json(t *testing.T) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("answer %d %q is not JSON: %v", r.code, r.body, err)
	}
	return m
}

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send sends a request to sc with the session cookie (if any) and headers
// given as name, value pairs.
func send(t *testing.T, sc *sidecar.Sidecar, method, path, cookie string, form url.Values, headers ...string) reply {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, sc.URL()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.Header.Set("Cookie", "theme=dark; "+browser.CookieName+"="+cookie)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// sameOrigin is what a browser sends with a form post of the site itself.
var sameOrigin = []string{"Sec-Fetch-Site", "same-origin"}

// login signs user in through sc, with the browser's current cookie (may
// be empty), and returns the new session cookie.
func (st *bffStack) login(t *testing.T, sc *sidecar.Sidecar, user, cookie string) string {
	t.Helper()
	r := send(t, sc, "POST", "/login", cookie, url.Values{"user": {user}, "tenant": {"acme"}}, sameOrigin...)
	v, cleared, ok := r.cookie()
	if r.code != http.StatusSeeOther || !ok || cleared {
		t.Fatalf("login: %d %s, cookie %v; want 303 with a session cookie", r.code, r.body, r.header.Values("Set-Cookie"))
	}
	return v
}

// whoami asks the app who the sidecar says the request is from.
func whoami(t *testing.T, sc *sidecar.Sidecar, cookie string) map[string]string {
	t.Helper()
	r := send(t, sc, "GET", "/whoami", cookie, nil)
	if r.code != http.StatusOK {
		t.Fatalf("whoami: %d %s, want 200", r.code, r.body)
	}
	return r.json(t)
}

// wantRefused checks that cookie no longer opens a session on sc: 401, and
// the cookie cleared.
func wantRefused(t *testing.T, sc *sidecar.Sidecar, cookie string) error {
	r := send(t, sc, "GET", "/whoami", cookie, nil)
	if _, cleared, _ := r.cookie(); r.code != http.StatusUnauthorized || !cleared {
		return fmt.Errorf("cookie on %s: %d %s (cleared %v), want 401 and the cookie cleared", sc.URL(), r.code, r.body, cleared)
	}
	return nil
}

// sessions lists the issuer's live sessions of sub.
func (st *bffStack) sessions(t *testing.T, sub string) []issuer.Session {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", st.svc.URL()+"/v1/sessions?sub="+sub, nil)
	req.Header.Set("Authorization", "Bearer "+bffAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Sessions []issuer.Session }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Sessions
}

// waitNoSessions waits until the issuer has no live session of sub.
func (st *bffStack) waitNoSessions(t *testing.T, sub string) {
	t.Helper()
	bustest.WaitFor(t, 5*time.Second, func() error {
		if got := st.sessions(t, sub); len(got) != 0 {
			return fmt.Errorf("sessions of %s still live at the issuer: %v", sub, got)
		}
		return nil
	})
}

// revoke revokes through the issuer's admin API.
func (st *bffStack) revoke(t *testing.T, kind, value string) {
	t.Helper()
	body, _ := json.Marshal(issuer.RevocationRequest{Kind: kind, Value: value, Reason: "test"})
	req, _ := http.NewRequestWithContext(t.Context(), "POST", st.svc.URL()+"/v1/revocations", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bffAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("revoke %s %s: %d", kind, value, resp.StatusCode)
	}
}

// TestBFF_LoginHandoff logs in through the sidecar: the browser gets a
// __Host- cookie that only the sidecar can read, the app gets the identity
// headers and never the cookie, and every login starts a new session and
// ends the one the browser had (no fixation).
func TestBFF_LoginHandoff(t *testing.T) {
	st := newBFFStack(t, 1, 0, browser.Config{})
	sc := st.scs[0]

	if r := send(t, sc, "GET", "/whoami", "", nil); r.code != http.StatusUnauthorized {
		t.Fatalf("without a session: %d, want 401", r.code)
	}
	if r := send(t, sc, "GET", "/", "", nil, "Accept", "text/html"); r.code != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Fatalf("page without a session: %d to %q, want 303 to /login", r.code, r.header.Get("Location"))
	}
	if r := send(t, sc, "GET", "/login", "", nil); r.code != http.StatusOK || !strings.Contains(r.body, `id="login"`) {
		t.Fatalf("login page: %d, want 200 (public)", r.code)
	}

	r := send(t, sc, "POST", "/login", "", url.Values{"user": {"alice"}, "tenant": {"acme"}}, sameOrigin...)
	if r.code != http.StatusSeeOther || r.header.Get(browser.HeaderHandoff) != "" {
		t.Fatalf("login: %d, handoff header %q; want 303 and the header removed", r.code, r.header.Get(browser.HeaderHandoff))
	}
	var line string
	for _, l := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(l, browser.CookieName+"=") {
			line = l
		}
	}
	for _, want := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=86"} { // a day, to the second
		if !strings.Contains(line, want) {
			t.Errorf("Set-Cookie %q lacks %s", line, want)
		}
	}
	if strings.Contains(strings.ToLower(line), "domain=") || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Set-Cookie %q with Cache-Control %q: want no Domain, no-store", line, r.header.Get("Cache-Control"))
	}
	if all := fmt.Sprint(r.header) + r.body; strings.Contains(all, "hrt_") || strings.Contains(all, "eyJ") {
		t.Fatalf("a token reached the browser: %s", all)
	}
	first, _, _ := r.cookie()

	me := whoami(t, sc, first)
	if me["sub"] != "alice" || me["tenant"] != "acme" || me["sid"] == "" || me["csrf"] == "" {
		t.Fatalf("upstream saw %v; want alice of acme with a session and a CSRF token", me)
	}
	if me["cookie"] != "theme=dark" || me["authorization"] != "" {
		t.Fatalf("upstream got Cookie %q, Authorization %q: want only the app's own cookie", me["cookie"], me["authorization"])
	}
	if got := st.sessions(t, "alice"); len(got) != 1 || got[0].ID != me["sid"] {
		t.Fatalf("issuer sessions %v, want the one session %s", got, me["sid"])
	}

	t.Run("upstream cannot set the cookie", func(t *testing.T) {
		r := send(t, sc, "GET", "/plant", first, nil)
		if v, _, ok := r.cookie(); ok && v == "forged" {
			t.Fatal("the upstream's session cookie reached the browser")
		}
	})
	t.Run("failed handoff", func(t *testing.T) {
		r := send(t, sc, "POST", "/login/bogus", "", nil, sameOrigin...)
		if _, _, set := r.cookie(); r.code != http.StatusBadGateway || set || r.header.Get(browser.HeaderHandoff) != "" || strings.Contains(r.body, "hrt_") {
			t.Fatalf("bogus handoff: %d %s, cookie set %v, handoff header %q; want 502, no cookie, no token", r.code, r.body, set, r.header.Get(browser.HeaderHandoff))
		}
	})
	t.Run("forged cookie", func(t *testing.T) {
		for _, c := range []string{"forged", first[:len(first)-4] + "AAAA", "v1." + strings.Repeat("A", 200)} {
			if err := wantRefused(t, sc, c); err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("forged identity headers", func(t *testing.T) {
		r := send(t, sc, "GET", "/whoami", first, nil, verifier.HeaderSubject, "mallory", browser.HeaderCSRF, "x")
		if m := r.json(t); m["sub"] != "alice" || m["csrf"] != me["csrf"] {
			t.Fatalf("upstream saw %v", m)
		}
	})

	// Session fixation: whatever cookie the browser held before (here one
	// an attacker could have planted: a session of their own), a login
	// gives a new session, and the old cookie stops working everywhere.
	second := st.login(t, sc, "bob", first)
	me2 := whoami(t, sc, second)
	if second == first || me2["sid"] == me["sid"] || me2["csrf"] == me["csrf"] || me2["sub"] != "bob" {
		t.Fatalf("after a new login: %v (before %v); want a new session and CSRF token", me2, me)
	}
	if err := wantRefused(t, sc, first); err != nil {
		t.Fatalf("the cookie from before the login: %v", err)
	}
	st.waitNoSessions(t, "alice") // alice's replaced session
}

// TestBFF_CSRF sends state-changing requests with a valid session cookie
// as another site's page would: none reaches the app.
func TestBFF_CSRF(t *testing.T) {
	st := newBFFStack(t, 1, 0, browser.Config{})
	sc := st.scs[0]
	cookie := st.login(t, sc, "alice", "")
	token := whoami(t, sc, cookie)["csrf"]
	other := whoami(t, sc, st.login(t, sc, "bob", ""))["csrf"]

	tests := []struct {
		name    string
		headers []string
		want    int
	}{
		{"another site's form post", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 403},
		{"a sibling subdomain's form post", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"old browser, other origin", []string{"Origin", "https://evil.example"}, 403},
		{"no origin, no token", nil, 403},
		{"no origin, another session's token", []string{browser.HeaderCSRFToken, other}, 403},
		{"cross-site even with the token", []string{"Sec-Fetch-Site", "cross-site", browser.HeaderCSRFToken, token}, 403},
		{"same origin", sameOrigin, 200},
		{"old browser, same origin", []string{"Origin", "http://" + sc.Addr().String()}, 200},
		{"no origin, the session's token", []string{browser.HeaderCSRFToken, token}, 200},
	}
	for _, tt := range tests {
		before := st.app.transfers.Load()
		r := send(t, sc, "POST", "/transfer", cookie, url.Values{"amount": {"1000"}}, tt.headers...)
		reached := st.app.transfers.Load() - before
		if r.code != tt.want || (tt.want == 403) != (reached == 0) {
			t.Errorf("%s: %d %s, app reached %d times; want %d", tt.name, r.code, r.body, reached, tt.want)
		}
	}

	// Login CSRF (signing the victim in as the attacker) and logout CSRF
	// are refused too; the session lives on.
	r := send(t, sc, "POST", "/login", cookie, url.Values{"user": {"mallory"}}, "Sec-Fetch-Site", "cross-site")
	if _, _, set := r.cookie(); r.code != 403 || set {
		t.Errorf("cross-site login: %d, sets a cookie %v; want 403", r.code, set)
	}
	if r := send(t, sc, "POST", browser.LogoutPath, cookie, nil, "Sec-Fetch-Site", "cross-site"); r.code != 403 {
		t.Errorf("cross-site logout: %d, want 403", r.code)
	}
	if r := send(t, sc, "POST", browser.LogoutPath, cookie, nil); r.code != 403 {
		t.Errorf("logout without origin or token: %d, want 403", r.code)
	}
	if me := whoami(t, sc, cookie); me["sub"] != "alice" {
		t.Fatalf("after the refused attempts: %v", me)
	}
}

// TestBFF_LogoutEverywhere logs out on one replica: the session ends at
// the issuer, the cookie is cleared, and replaying it fails on every
// replica, while a stream opened with it on another replica is cut.
func TestBFF_LogoutEverywhere(t *testing.T) {
	st := newBFFStack(t, 2, 0, browser.Config{})
	a, b := st.scs[0], st.scs[1]
	cookie := st.login(t, a, "alice", "")
	if me := whoami(t, b, cookie); me["sub"] != "alice" {
		t.Fatalf("replica b (same key) saw %v", me)
	}
	stream := openStream(t, b, cookie)

	r := send(t, a, "POST", browser.LogoutPath, cookie, nil, sameOrigin...)
	if _, cleared, _ := r.cookie(); r.code != http.StatusNoContent || !cleared {
		t.Fatalf("logout: %d %s (cleared %v), want 204 clearing the cookie", r.code, r.body, cleared)
	}
	if err := wantRefused(t, a, cookie); err != nil {
		t.Fatalf("replay on the replica that logged out: %v", err)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantRefused(t, b, cookie) })
	waitStreamEnds(t, stream)
	if got := st.sessions(t, "alice"); len(got) != 0 {
		t.Fatalf("issuer sessions after logout: %v", got)
	}
	// Logging out again, or without a session, is harmless; a page's form
	// post is sent back to the login page.
	if r := send(t, b, "POST", browser.LogoutPath, cookie, nil, "Sec-Fetch-Site", "same-origin", "Accept", "text/html"); r.code != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Fatalf("second logout: %d to %q, want 303 to /login", r.code, r.header.Get("Location"))
	}
	if r := send(t, a, "GET", browser.LogoutPath, cookie, nil); r.code != http.StatusMethodNotAllowed {
		t.Fatalf("GET logout: %d, want 405", r.code)
	}
}

// openStream opens the app's event stream through sc with cookie.
func openStream(t *testing.T, sc *sidecar.Sidecar, cookie string) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", sc.URL()+"/events", nil)
	req.Header.Set("Cookie", browser.CookieName+"="+cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("open stream: %v %v", resp, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatalf("stream: %v", err)
	}
	return br
}

// waitStreamEnds reads a stream until it ends, within a deadline.
func waitStreamEnds(t *testing.T, br *bufio.Reader) {
	t.Helper()
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := br.ReadString('\n'); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream opened with the session is still open")
	}
}

// TestBFF_Refresh lets the short-lived access token behind a cookie reach
// refresh time while several requests of the browser are in flight: they
// all pass, the issuer rotates once (no reuse detection tripped), and the
// browser's cookies from before and after the refresh both keep working.
func TestBFF_Refresh(t *testing.T) {
	st := newBFFStack(t, 1, 2*time.Second, browser.Config{})
	sc := st.scs[0]
	cookie := st.login(t, sc, "alice", "")
	sid := whoami(t, sc, cookie)["sid"]

	refreshed := func(from string) string {
		var next string
		bustest.WaitFor(t, 10*time.Second, func() error {
			var wg sync.WaitGroup
			replies := make([]reply, 8)
			for i := range replies {
				wg.Go(func() { replies[i] = send(t, sc, "GET", "/whoami", from, nil) })
			}
			wg.Wait()
			for _, r := range replies {
				if r.code != http.StatusOK {
					t.Fatalf("a request during the refresh: %d %s", r.code, r.body)
				}
				if v, _, ok := r.cookie(); ok {
					next = v
				}
			}
			if next == "" {
				return fmt.Errorf("not refreshed yet")
			}
			return nil
		})
		return next
	}
	second := refreshed(cookie)
	for _, c := range []string{cookie, second} {
		if me := whoami(t, sc, c); me["sid"] != sid {
			t.Fatalf("after the refresh: %v, want session %s", me, sid)
		}
	}
	third := refreshed(second) // the refreshed session refreshes again
	if got := st.sessions(t, "alice"); len(got) != 1 || got[0].ID != sid {
		t.Fatalf("issuer sessions after two refreshes: %v, want %s live", got, sid)
	}
	st.revoke(t, "subject", "alice")
	bustest.WaitFor(t, 5*time.Second, func() error { return wantRefused(t, sc, third) })
}

// TestBFF_Timeouts moves the sidecar's session clock: a session without
// requests for longer than the idle timeout ends, and an active one ends
// at its maximum age; both end at the issuer too.
func TestBFF_Timeouts(t *testing.T) {
	st := newBFFStack(t, 1, 0, browser.Config{Idle: 10 * time.Minute, MaxAge: time.Hour})
	sc := st.scs[0]

	idle := st.login(t, sc, "alice", "")
	st.shift.Add(int64(9 * time.Minute))
	r := send(t, sc, "GET", "/whoami", idle, nil)
	if r.code != 200 {
		t.Fatalf("after 9 idle minutes: %d", r.code)
	}
	if v, _, ok := r.cookie(); ok {
		idle = v // the last activity, re-sealed
	}
	st.shift.Add(int64(11 * time.Minute))
	if err := wantRefused(t, sc, idle); err != nil {
		t.Fatalf("after 11 idle minutes: %v", err)
	}
	st.waitNoSessions(t, "alice") // idle session

	active := st.login(t, sc, "bob", "")
	for step := 1; ; step++ {
		st.shift.Add(int64(9 * time.Minute))
		r := send(t, sc, "GET", "/whoami", active, nil)
		if step*9 >= 60 {
			if _, cleared, _ := r.cookie(); r.code != 401 || !cleared {
				t.Fatalf("after %d active minutes: %d, want 401 clearing the cookie", step*9, r.code)
			}
			break
		}
		v, _, ok := r.cookie()
		if r.code != 200 || !ok {
			t.Fatalf("after %d active minutes: %d, cookie re-issued %v; want 200 with the activity recorded", step*9, r.code, ok)
		}
		active = v
	}
	st.waitNoSessions(t, "bob") // session past its maximum age
}

// TestBFF_Revoked revokes by session, subject, tenant and key: each
// revocation makes the sidecar refuse the cookie and clear it.
func TestBFF_Revoked(t *testing.T) {
	st := newBFFStack(t, 1, 0, browser.Config{})
	sc := st.scs[0]
	for _, kind := range []string{"session", "subject", "tenant", "key"} {
		t.Run(kind, func(t *testing.T) {
			user := "user-" + kind
			cookie := st.login(t, sc, user, "")
			me := whoami(t, sc, cookie)
			value := map[string]string{"session": me["sid"], "subject": user, "tenant": "acme", "key": currentKid(t, st.svc)}[kind]
			st.revoke(t, kind, value)
			bustest.WaitFor(t, 5*time.Second, func() error { return wantRefused(t, sc, cookie) })
		})
	}
}

// currentKid returns the kid the issuer signs with now, read from a new
// session's token.
func currentKid(t *testing.T, svc *issuer.Service) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", svc.URL()+"/v1/sessions", strings.NewReader(`{"sub":"probe"}`))
	req.Header.Set("Authorization", "Bearer "+bffAdmin)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	var sess issuer.SessionResponse
	if err := json.NewDecoder(r2.Body).Decode(&sess); err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Kid string }
	seg, _, _ := strings.Cut(sess.AccessToken, ".")
	raw, err := decodeSegment(seg)
	if err != nil || json.Unmarshal(raw, &hdr) != nil || hdr.Kid == "" {
		t.Fatalf("token header %q: %v", raw, err)
	}
	return hdr.Kid
}
