package sidecar

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/browser"
)

// TestBFF_RefreshedCookieSurvivesEarlyHints: when the upstream sends 103
// Early Hints before its answer, the session cookie the sidecar re-issued
// for the request (here: its last-activity time moved on) is on the final
// response, not spent on the 103, which browsers do not take cookies from.
func TestBFF_RefreshedCookieSurvivesEarlyHints(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	c := baseClaims(time.Now().Add(-time.Second))
	// The issuer's refresh endpoint, as the login handoff calls it.
	iss := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"access_token": k.EdToken(t, c), "token_type": "Bearer",
			"refresh_token": "rt-2", "session_id": c["sid"].(string)})
	}))
	t.Cleanup(iss.Close)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			w.Header().Set(browser.HeaderHandoff, "rt-1")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Link", "</app.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "page for "+r.Header.Get(verifier.HeaderSubject))
	}))
	t.Cleanup(app.Close)
	var shift atomic.Int64 // added to the session clock
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), Upstream: app.URL,
		Cookies: &browser.Config{IssuerURL: iss.URL, PublicPaths: []string{"/login"},
			Now: func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }}})
	waitReady(t, sc)

	login, err := http.Get(sc.URL() + "/login")
	if err != nil {
		t.Fatal(err)
	}
	login.Body.Close()
	var sealed string
	for _, ck := range login.Cookies() {
		if ck.Name == browser.CookieName {
			sealed = ck.Value
		}
	}
	if login.StatusCode != http.StatusNoContent || sealed == "" {
		t.Fatalf("login handoff = %d, Set-Cookie %q: want 204 with a session cookie", login.StatusCode, login.Header.Values("Set-Cookie"))
	}
	shift.Store(int64(5 * time.Minute)) // the session's last activity is old enough to be re-issued

	var (
		mu    sync.Mutex
		early []http.Header
	)
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			early = append(early, http.Header(h).Clone())
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sc.URL()+"/page", nil)
	req.AddCookie(&http.Cookie{Name: browser.CookieName, Value: sealed})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "page for alice" {
		t.Fatalf("GET /page = %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(early) != 1 || early[0].Get("Link") == "" {
		t.Fatalf("103 Early Hints seen: %v, want one with the upstream's Link", early)
	}
	if v := early[0].Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("the 103 carried Set-Cookie %q", v)
	}
	var reissued bool
	for _, ck := range resp.Cookies() {
		reissued = reissued || (ck.Name == browser.CookieName && ck.Value != "" && ck.Value != sealed)
	}
	if !reissued || !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
		t.Fatalf("final response Set-Cookie %q, Cache-Control %q: want the re-issued session cookie, no-store",
			resp.Header.Values("Set-Cookie"), resp.Header.Get("Cache-Control"))
	}
}
