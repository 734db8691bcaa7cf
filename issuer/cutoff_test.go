package issuer_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/issuer"
)

// TestReplicas_CutoffsOutliveTheDenylist revokes, through replica a, the
// sessions of every kind that stops refreshes (session, subject, client,
// tenant, all; one value or many), then lets the replicas' clock pass the
// time their denylists keep the revocations: no replica refreshes a
// covered session, whichever replica created it. A session created after
// the revocations is refreshed everywhere.
func TestReplicas_CutoffsOutliveTheDenylist(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	cfg := issuer.Config{AccessTTL: 2 * time.Second, MaxAccessTTL: 5 * time.Second, Leeway: time.Second,
		SessionTTL: time.Hour, SessionIdle: time.Hour, Now: now}
	rs := runReplicas(t, false, 2, cfg)
	a, b := rs.issuers[0], rs.issuers[1]

	type covered struct {
		name string
		rt   string
	}
	var sessions []covered
	add := func(name string, on *issuer.Service, req issuer.SessionRequest) issuer.SessionResponse {
		s := createSession(t, on, req)
		sessions = append(sessions, covered{name, s.RefreshToken})
		return s
	}
	one := add("session", b, issuer.SessionRequest{Subject: "s1"})
	bulk1 := add("bulk session 1", b, issuer.SessionRequest{Subject: "s2"})
	bulk2 := add("bulk session 2", a, issuer.SessionRequest{Subject: "s3"})
	add("subject", b, issuer.SessionRequest{Subject: "mallory"})
	add("bulk subject", b, issuer.SessionRequest{Subject: "oscar"})
	add("client", b, issuer.SessionRequest{Subject: "c1", ClientID: "app-1"})
	add("tenant", b, issuer.SessionRequest{Subject: "t1", Tenant: "acme"})

	revoke(t, a, "session", one.SessionID)
	for _, req := range []issuer.RevocationRequest{
		{Kind: "session", Values: []string{bulk1.SessionID, bulk2.SessionID}},
		{Kind: "subject", Values: []string{"oscar", "nobody"}},
	} {
		if code, body := call(t, "POST", a.URL()+"/v1/revocations", adminToken, req); code != http.StatusOK {
			t.Fatalf("bulk revoke %+v: %d %s", req, code, body)
		}
	}
	revoke(t, a, "subject", "mallory")
	revoke(t, a, "client", "app-1")
	revoke(t, a, "tenant", "acme")

	check := func(when string) {
		t.Helper()
		for _, s := range sessions {
			for _, i := range []int{1, 0} { // b first: a refusing marks the session ended
				on := rs.issuers[i]
				if r := refreshAt(t, on, s.rt, "", "", ""); r.code != 400 || r.err != "invalid_grant" {
					t.Errorf("%s: refresh of the %s session on replica %d: %v, want invalid_grant", when, s.name, i, r)
				}
			}
		}
	}
	// No refresh before: a refused one marks the session ended in
	// HERALD_SESSIONS, which would hide what the replicas remember.
	clock.Add(int64(time.Minute)) // past at + max access ttl + leeway
	check("once the denylists forgot the revocations")

	// Kind all covers every session created before it.
	all := createSession(t, b, issuer.SessionRequest{Subject: "zoe"})
	sessions = []covered{{"all", all.RefreshToken}}
	clock.Add(int64(time.Millisecond))
	revoke(t, a, "all", "")
	clock.Add(int64(time.Millisecond))
	later := createSession(t, b, issuer.SessionRequest{Subject: "mallory"})
	clock.Add(int64(time.Minute))
	check("once the denylists forgot the revocation of all")
	for i, on := range rs.issuers {
		r := refreshAt(t, on, later.RefreshToken, "", "", "")
		if r.code != http.StatusOK {
			t.Fatalf("refresh on replica %d of a session created after the revocations: %v", i, r)
		}
		later.RefreshToken = r.resp.RefreshToken
	}
}
