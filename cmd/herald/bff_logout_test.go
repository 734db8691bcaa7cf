package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier/browser"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// TestBFF_LogoutAfterRotationElsewhere: a copy of the victim's cookie is
// used on replica b at refresh time, so the issuer rotates the session's
// refresh token there; the victim then logs out on replica a with the
// cookie, whose refresh token is now used. The logout still ends the
// session at the issuer, so the copy stops working on b, also once its
// access token is due for refresh.
func TestBFF_LogoutAfterRotationElsewhere(t *testing.T) {
	st := newBFFStack(t, 2, 0, browser.Config{})
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

	r = send(t, a, "POST", browser.LogoutPath, victim, nil, sameOrigin...)
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
	st := newBFFStack(t, 1, 0, browser.Config{})
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
	sc := st.addReplica(t, browser.Config{IssuerURL: failing.URL})

	cookie := st.login(t, sc, "alice", "")
	r := send(t, sc, "POST", browser.LogoutPath, cookie, nil, sameOrigin...)
	if _, _, set := r.cookie(); r.code != http.StatusBadGateway || set {
		t.Fatalf("logout the issuer did not acknowledge: %d %s (cookie touched %v), want 502 keeping the cookie", r.code, r.body, set)
	}
	if got := st.sessions(t, "alice"); len(got) != 1 {
		t.Fatalf("issuer sessions: %v, want alice's still live", got)
	}
}

// TestBFF_OldCookieIsReuse: a cookie copied at login stops working once the
// victim's session has refreshed past it, however active the victim is: a
// cookie older than the immediately previous generation, or the previous
// one past its grace window, on the replica that refreshed or on another
// one (which learns of the refresh from HERALD_BFF), is reuse and ends the
// session, as refresh token reuse does.
func TestBFF_OldCookieIsReuse(t *testing.T) {
	st := newBFFStack(t, 2, 0, browser.Config{})
	a, b := st.scs[0], st.scs[1]
	refresh := func(sc *sidecar.Sidecar, cookie string) string {
		t.Helper()
		st.clock.Add(int64(4 * time.Minute)) // due for refresh
		r := send(t, sc, "GET", "/whoami", cookie, nil)
		next, _, ok := r.cookie()
		if r.code != http.StatusOK || !ok {
			t.Fatalf("refresh: %d %s, refreshed cookie %v", r.code, r.body, ok)
		}
		return next
	}

	t.Run("two generations back", func(t *testing.T) {
		copied := st.login(t, a, "alice", "")
		victim := refresh(a, refresh(a, copied))
		if err := wantRefused(t, a, copied); err != nil {
			t.Fatalf("the copy from login after two refreshes: %v", err)
		}
		st.waitNoSessions(t, "alice")
		bustest.WaitFor(t, 5*time.Second, func() error { return wantRefused(t, b, victim) })
	})
	for _, sc := range []*sidecar.Sidecar{a, b} {
		t.Run("previous generation past the grace window on "+sc.URL(), func(t *testing.T) {
			user := "bob" + strings.TrimPrefix(sc.URL(), "http://127.0.0.1:")
			copied := st.login(t, a, user, "")
			victim := refresh(a, copied)
			if me := whoami(t, a, copied); me["sub"] != user {
				t.Fatalf("the previous cookie right after the refresh: %v, want it served", me)
			}
			st.shift.Add(int64(2 * time.Minute))
			st.clock.Add(int64(2 * time.Minute))
			if err := wantRefused(t, sc, copied); err != nil {
				t.Fatalf("the previous cookie two minutes after the refresh: %v", err)
			}
			st.waitNoSessions(t, user)
			bustest.WaitFor(t, 5*time.Second, func() error { return wantRefused(t, a, victim) })
		})
	}
}

// TestBFF_TimeoutsWithoutRequests: a stream opened with a cookie is cut at
// the session's absolute timeout, and the sidecar ends the session at the
// issuer then, without waiting for a request; a session without requests
// is ended at the issuer once past its idle timeout (counted, on a replica
// that may not see every request, from no earlier than its access token's
// end of life).
func TestBFF_TimeoutsWithoutRequests(t *testing.T) {
	t.Run("absolute", func(t *testing.T) {
		st := newBFFStack(t, 1, 0, browser.Config{Idle: 20 * time.Second, MaxAge: 20 * time.Second})
		sc := st.scs[0]
		cookie := st.login(t, sc, "alice", "")
		stream := openStream(t, sc, cookie)
		st.shift.Add(int64(25 * time.Second))
		waitStreamEnds(t, stream)
		st.waitNoSessions(t, "alice")
	})
	t.Run("idle", func(t *testing.T) {
		st := newBFFStack(t, 1, 0, browser.Config{Idle: 20 * time.Second, MaxAge: time.Hour})
		sc := st.scs[0]
		cookie := st.login(t, sc, "bob", "")
		if me := whoami(t, sc, cookie); me["sub"] != "bob" {
			t.Fatalf("whoami: %v", me)
		}
		st.shift.Add(int64(6 * time.Minute)) // past the access token's 5 minutes and the idle timeout
		st.waitNoSessions(t, "bob")
	})
}

// TestBFF_IdleOnOneReplicaOnly: a replica that has not seen a session for
// longer than the idle timeout does not end it while another replica
// serves it: the issuer refuses the end (session_in_use), because that
// replica has refreshed the session since.
func TestBFF_IdleOnOneReplicaOnly(t *testing.T) {
	cfg := browser.Config{Idle: 10 * time.Minute, MaxAge: time.Hour, SweepEvery: 50 * time.Millisecond}
	st := newBFFStack(t, 1, 0, cfg)
	b := st.scs[0]
	target, err := url.Parse(st.svc.URL())
	if err != nil {
		t.Fatal(err)
	}
	var inUse atomic.Int64
	fwd := httputil.NewSingleHostReverseProxy(target)
	fwd.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/sessions/end") && resp.StatusCode == http.StatusConflict {
			inUse.Add(1)
		}
		return nil
	}
	watched := httptest.NewServer(fwd)
	t.Cleanup(watched.Close)
	cfg.IssuerURL = watched.URL
	a := st.addReplica(t, cfg)

	cookie := st.login(t, a, "carol", "")
	st.shift.Add(int64(6 * time.Minute))
	st.clock.Add(int64(6 * time.Minute)) // past the access token's 5 minutes: b refreshes
	r := send(t, b, "GET", "/whoami", cookie, nil)
	next, _, ok := r.cookie()
	if r.code != http.StatusOK || !ok {
		t.Fatalf("on b: %d %s, refreshed cookie %v", r.code, r.body, ok)
	}
	// a last saw the session 15.5 minutes ago (with a token that lived 5
	// more), b 9.5.
	st.shift.Add(int64(9*time.Minute + 30*time.Second))
	bustest.WaitFor(t, 10*time.Second, func() error {
		if inUse.Load() == 0 {
			return fmt.Errorf("replica a has not tried to end the session yet")
		}
		return nil
	})
	if got := st.sessions(t, "carol"); len(got) != 1 {
		t.Fatalf("issuer sessions %v, want carol's live", got)
	}
	if me := whoami(t, b, next); me["sub"] != "carol" {
		t.Fatalf("on b: %v", me)
	}
}

// TestBFF_LogoutReplayAsksTheIssuerOnce: a logout the issuer acknowledged
// clears the cookie; the same cookie sent to logout again, however often,
// is answered by the sidecar from memory, without a request to the
// issuer each time: the issuer limits requests per source address, and
// the sidecar's are every user's refreshes.
func TestBFF_LogoutReplayAsksTheIssuerOnce(t *testing.T) {
	st := newBFFStack(t, 1, 0, browser.Config{})
	target, err := url.Parse(st.svc.URL())
	if err != nil {
		t.Fatal(err)
	}
	fwd := httputil.NewSingleHostReverseProxy(target)
	var ends atomic.Int64
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/sessions/end") {
			ends.Add(1)
		}
		fwd.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)
	sc := st.addReplica(t, browser.Config{IssuerURL: counting.URL})

	cookie := st.login(t, sc, "alice", "")
	for i := range 20 {
		r := send(t, sc, "POST", browser.LogoutPath, cookie, nil, sameOrigin...)
		if _, cleared, _ := r.cookie(); r.code != http.StatusNoContent || !cleared {
			t.Fatalf("logout %d: %d %s (cleared %v), want 204 clearing the cookie", i, r.code, r.body, cleared)
		}
	}
	if n := ends.Load(); n != 1 {
		t.Fatalf("requests to the issuer's %s for 20 logouts with one cookie: %d, want 1", "/v1/sessions/end", n)
	}
}
