package verifier

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// TestBFF_RefreshedCookieSurvivesEarlyHints: when the upstream sends 103
// Early Hints before its answer, the session cookie the sidecar re-issued
// for the request (here: its last-activity time moved on) is on the final
// response, not spent on the 103, which browsers do not take cookies from.
func TestBFF_RefreshedCookieSurvivesEarlyHints(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.edKid, k.edJWK)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "page for "+r.Header.Get(HeaderSubject))
	}))
	t.Cleanup(app.Close)
	sc, _ := startSidecarWith(t, conn, SidecarConfig{DataDir: t.TempDir(), Upstream: app.URL,
		Cookies: &CookieConfig{IssuerURL: "http://127.0.0.1:9"}})
	waitReady(t, sc)

	c := baseClaims(time.Now().Add(-time.Second))
	now := time.Now()
	st := &cookieState{Handle: randomID(), Session: c["sid"].(string), Access: k.edToken(t, c), Refresh: "rt",
		Created: now.Add(-10 * time.Minute).Unix(), Seen: now.Add(-5 * time.Minute).Unix()}
	sealed, err := sc.bff.seal.seal(st)
	if err != nil {
		t.Fatal(err)
	}

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
	req.AddCookie(&http.Cookie{Name: CookieName, Value: sealed})
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
		reissued = reissued || (ck.Name == CookieName && ck.Value != "" && ck.Value != sealed)
	}
	if !reissued || !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
		t.Fatalf("final response Set-Cookie %q, Cache-Control %q: want the re-issued session cookie, no-store",
			resp.Header.Values("Set-Cookie"), resp.Header.Get("Cache-Control"))
	}
}
