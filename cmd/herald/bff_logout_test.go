package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
)

// TestBFF_LogoutAfterRotationElsewhere: a copy of the victim's cookie is
// used on replica b at refresh time, so the issuer rotates the session's
// refresh token there; the victim then logs out on replica a with the
// cookie, whose refresh token is now used. The logout still ends the
// session at the issuer, so the copy stops working on b, also once its
// access token is due for refresh.
func TestBFF_LogoutAfterRotationElsewhere(t *testing.T) {
	st := newBFFStack(t, 2, 0, verifier.CookieConfig{})
	a, b := st.scs[0], st.scs[1]
	victim := st.login(t, a, "alice", "")
	sid := whoami(t, a, victim)["sid"]

	st.clock.Add(int64(4 * time.Minute)) // the access token is due for refresh
	r := send(t, b, "GET", "/whoami", victim, nil)
	stolen, _, ok := r.cookie()
	if r.code != http.StatusOK || !ok {
		t.Fatalf("the copy at refresh time: %d %s, refreshed cookie %v; want 200 with one", r.code, r.body, ok)
	}
	st.waitIssued(t, 3) // created, handed off, refreshed by the copy

	r = send(t, a, "POST", verifier.LogoutPath, victim, nil, sameOrigin...)
	if _, cleared, _ := r.cookie(); r.code != http.StatusNoContent || !cleared {
		t.Fatalf("logout: %d %s (cleared %v), want 204 clearing the cookie", r.code, r.body, cleared)
	}
	if got := st.sessions(t, "alice"); len(got) != 0 {
		t.Fatalf("issuer sessions after the logout answered 204: %v, want %s ended", got, sid)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantRefused(t, b, stolen) })
	st.clock.Add(int64(4 * time.Minute))
	if err := wantRefused(t, b, stolen); err != nil {
		t.Fatalf("the copy at its next refresh: %v", err)
	}
}

// TestBFF_LogoutNotAcknowledged: when the issuer does not acknowledge the
// end of the session, the logout answers 502 and keeps the cookie, so
// that the user can try again; the session is still live and so is the
// cookie.
func TestBFF_LogoutNotAcknowledged(t *testing.T) {
	st := newBFFStack(t, 1, 0, verifier.CookieConfig{})
	target, err := url.Parse(st.svc.URL())
	if err != nil {
		t.Fatal(err)
	}
	fwd := httputil.NewSingleHostReverseProxy(target)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/end") || strings.HasSuffix(r.URL.Path, "/revoke") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"temporarily_unavailable"}`)
			return
		}
		fwd.ServeHTTP(w, r)
	}))
	t.Cleanup(failing.Close)
	sc := st.addReplica(t, verifier.CookieConfig{IssuerURL: failing.URL})

	cookie := st.login(t, sc, "alice", "")
	r := send(t, sc, "POST", verifier.LogoutPath, cookie, nil, sameOrigin...)
	if _, _, set := r.cookie(); r.code != http.StatusBadGateway || set {
		t.Fatalf("logout the issuer did not acknowledge: %d %s (cookie touched %v), want 502 keeping the cookie", r.code, r.body, set)
	}
	if got := st.sessions(t, "alice"); len(got) != 1 {
		t.Fatalf("issuer sessions: %v, want alice's still live", got)
	}
}
