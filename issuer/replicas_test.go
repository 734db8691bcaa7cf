package issuer_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// replicaSet is n issuer replicas serving one fleet, and a verifier.
type replicaSet struct {
	issuers []*issuer.Service
	stops   []func()
	sc      *sidecar.Sidecar
}

// runReplicas runs n issuer replicas, each with its own data directory,
// and one verifier: on one server, or on a three-node cluster with every
// stream and bucket replicated three times and each replica connected to
// another node. cfg's zero fields get runIssuerOn's settings.
func runReplicas(t *testing.T, cluster bool, n int, cfg issuer.Config) replicaSet {
	t.Helper()
	var servers []*natsserver.Server
	if cluster {
		c := bustest.RunCluster(t, 3)
		for i := range c.Len() {
			servers = append(servers, c.Server(i))
		}
		cfg.Replicas = 3
	} else {
		servers = []*natsserver.Server{bustest.RunServer(t)}
	}
	var rs replicaSet
	for i := range n {
		c := cfg
		svc, stop := runIssuerOn(t, bustest.Connect(t, servers[i%len(servers)]), c)
		rs.issuers, rs.stops = append(rs.issuers, svc), append(rs.stops, stop)
	}
	rs.sc, _ = runSidecar(t, servers[0], rs.issuers[0].IssuerURL(), t.TempDir())
	waitReady(t, rs.sc)
	return rs
}

// refreshed is the answer to a refresh.
type refreshed struct {
	code int
	resp issuer.TokenResponse
	err  string // error code
	desc string // error_description
}

// String shows the outcome without the tokens.
func (r refreshed) String() string {
	if r.code == http.StatusOK {
		return fmt.Sprintf("%d session %s", r.code, r.resp.SessionID)
	}
	return fmt.Sprintf("%d %s %q", r.code, r.err, r.desc)
}

// refreshAt presents rt to svc's token endpoint with an optional DPoP
// proof and client credentials.
func refreshAt(t *testing.T, svc *issuer.Service, rt, proof, clientID, secret string) refreshed {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", svc.URL()+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
	if err != nil {
		t.Error(err)
		return refreshed{}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	if clientID != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return refreshed{}
	}
	defer resp.Body.Close()
	r := refreshed{code: resp.StatusCode}
	if r.code == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&r.resp)
	} else {
		var e struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
		}
		err = json.NewDecoder(resp.Body).Decode(&e)
		r.err, r.desc = e.Error, e.Desc
	}
	if err != nil {
		t.Errorf("refresh answer %d: %v", r.code, err)
	}
	return r
}

// listSessions returns the ids of sub's live sessions, as svc lists them.
func listSessions(t *testing.T, svc *issuer.Service, sub string) []string {
	t.Helper()
	code, body := call(t, "GET", svc.URL()+"/v1/sessions?sub="+url.QueryEscape(sub), adminToken, nil)
	var out struct {
		Sessions []issuer.Session `json:"sessions"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
		t.Fatalf("list sessions on %s: %d %s", svc.URL(), code, body)
	}
	ids := []string{}
	for _, s := range out.Sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestReplicas_AnyReplicaServesAnySession: a session created on one replica
// is refreshed, listed, introspected, revoked (RFC 7009) and ended on the
// others, with its DPoP binding; a confidential client's session needs the
// client's credentials, which only the replica that registered it can check.
func TestReplicas_AnyReplicaServesAnySession(t *testing.T) {
	rs := runReplicas(t, false, 3, issuer.Config{})
	a, b, c := rs.issuers[0], rs.issuers[1], rs.issuers[2]

	sess := createSession(t, a, issuer.SessionRequest{Subject: "hana", Scope: "read"})
	rt, access := sess.RefreshToken, sess.AccessToken
	for i := range 9 {
		on := rs.issuers[(i+1)%3]
		r := refreshAt(t, on, rt, "", "", "")
		if r.code != http.StatusOK || r.resp.SessionID != sess.SessionID || r.resp.Scope != "read" {
			t.Fatalf("refresh %d on replica %d: %+v", i, (i+1)%3, r)
		}
		rt, access = r.resp.RefreshToken, r.resp.AccessToken
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, rs.sc, access, 200, "") })
	for _, on := range rs.issuers {
		if got := listSessions(t, on, "hana"); len(got) != 1 || got[0] != sess.SessionID {
			t.Fatalf("sessions of hana on %s = %v, want [%s]", on.URL(), got, sess.SessionID)
		}
	}
	code, body, _ := form(t, b.URL()+"/oauth2/introspect", url.Values{"token": {rt}}, "", "")
	if code != 401 {
		t.Fatalf("introspect without credentials: %d %v", code, body)
	}
	if in := introspectAt(t, b, rt); !in.Active || in.SessionID != sess.SessionID || in.TokenType != "refresh_token" {
		t.Fatalf("introspect the refresh token on b: %+v", in)
	}

	// RFC 7009 through c ends the session everywhere.
	if code, body, _ := form(t, c.URL()+"/oauth2/revoke", url.Values{"token": {rt}}, "", ""); code != 200 {
		t.Fatalf("revoke the refresh token on c: %d %v", code, body)
	}
	if r := refreshAt(t, a, rt, "", "", ""); r.code != 400 || r.err != "invalid_grant" {
		t.Fatalf("refresh on a after revocation through c: %+v", r)
	}
	if in := introspectAt(t, a, rt); in.Active {
		t.Fatalf("introspect the revoked refresh token on a: %+v", in)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, rs.sc, access, 401, "revoked") })
	if got := listSessions(t, b, "hana"); len(got) != 0 {
		t.Fatalf("sessions of hana on b after the revocation = %v, want none", got)
	}

	// DELETE /v1/sessions/<sid> on b ends a session created on a.
	ended := createSession(t, a, issuer.SessionRequest{Subject: "hana"})
	if code, body := call(t, "DELETE", b.URL()+"/v1/sessions/"+ended.SessionID, adminToken, nil); code != 200 {
		t.Fatalf("end a's session on b: %d %s", code, body)
	}
	if r := refreshAt(t, a, ended.RefreshToken, "", "", ""); r.code != 400 || r.desc != "session ended" {
		t.Fatalf("refresh on a of the session ended on b: %+v", r)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, rs.sc, ended.AccessToken, 401, "revoked") })

	// A session revocation through c stops refreshes on a at once.
	revoked := createSession(t, a, issuer.SessionRequest{Subject: "hana"})
	revoke(t, c, "session", revoked.SessionID)
	if r := refreshAt(t, a, revoked.RefreshToken, "", "", ""); r.code != 400 || r.err != "invalid_grant" {
		t.Fatalf("refresh on a of the session revoked through c: %+v", r)
	}

	// A DPoP-bound session needs a proof by its key on every replica.
	app := newDPoPClient(t)
	bound := createSession(t, b, issuer.SessionRequest{Subject: "ines", DPoPJKT: app.jkt})
	tokenURL := c.IssuerURL() + "/oauth2/token"
	if r := refreshAt(t, c, bound.RefreshToken, "", "", ""); r.code != 400 || r.err != "invalid_dpop_proof" {
		t.Fatalf("refresh of a bound session on c without a proof: %+v", r)
	}
	if r := refreshAt(t, c, bound.RefreshToken, app.proof(t, "POST", tokenURL, ""), "", ""); r.code != 200 || r.resp.TokenType != "DPoP" {
		t.Fatalf("refresh of a bound session on c with its key's proof: %+v", r)
	}

	// A confidential client is registered on a: its sessions need its
	// secret, which b cannot check, so b refuses rather than skip it.
	code, raw := call(t, "POST", a.URL()+"/v1/clients", adminToken, issuer.ClientRequest{Name: "backend"})
	var cl issuer.Client
	if code != 201 || json.Unmarshal(raw, &cl) != nil {
		t.Fatalf("create client on a: %d %s", code, raw)
	}
	conf := createSession(t, a, issuer.SessionRequest{Subject: "jo", ClientID: cl.ID})
	if r := refreshAt(t, b, conf.RefreshToken, "", cl.ID, cl.Secret); r.code != 401 || r.err != "invalid_client" {
		t.Fatalf("refresh of a's client's session on b: %+v, want 401 invalid_client", r)
	}
	if r := refreshAt(t, a, conf.RefreshToken, "", "", ""); r.code != 400 || r.err != "invalid_grant" {
		t.Fatalf("refresh of a client's session on a without its credentials: %+v", r)
	}
	if r := refreshAt(t, a, conf.RefreshToken, "", cl.ID, cl.Secret); r.code != 200 {
		t.Fatalf("refresh of a client's session on a with its secret: %+v", r)
	}
}

// TestReplicas_ConcurrentRefreshHasOneWinner presents one refresh token to
// two replicas at once, two requests each, round after round. Exactly one
// request wins. The others lose as two concurrent refreshes on one replica
// always have (TestRefresh_ConcurrentUseHasOneWinner): the token is used,
// so presenting it again is reuse: invalid_grant, and the session is
// revoked, the winner's new tokens with it.
func TestReplicas_ConcurrentRefreshHasOneWinner(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster bool
		rounds  int
	}{{"one server", false, 20}, {"three-node cluster", true, 10}} {
		t.Run(tc.name, func(t *testing.T) {
			rs := runReplicas(t, tc.cluster, 2, issuer.Config{})
			for round := range tc.rounds {
				sess := createSession(t, rs.issuers[round%2], issuer.SessionRequest{Subject: fmt.Sprintf("race-%d", round)})
				results := make([]refreshed, 4)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range results {
					wg.Go(func() {
						<-start
						results[i] = refreshAt(t, rs.issuers[i%2], sess.RefreshToken, "", "", "")
					})
				}
				close(start)
				wg.Wait()
				var winner *refreshed
				reuse := 0
				for i, r := range results {
					switch {
					case r.code == http.StatusOK && winner == nil:
						winner = &results[i]
					case r.code == http.StatusOK:
						t.Fatalf("round %d: two winners: %+v", round, results)
					case r.code != 400 || r.err != "invalid_grant":
						t.Fatalf("round %d: loser %d got %+v, want 400 invalid_grant", round, i, r)
					case strings.Contains(r.desc, "already used"):
						reuse++
					}
				}
				if winner == nil || reuse == 0 {
					t.Fatalf("round %d: %+v: want one winner and a loser that found the token used", round, results)
				}
				for _, on := range rs.issuers {
					if r := refreshAt(t, on, winner.resp.RefreshToken, "", "", ""); r.code != 400 || r.err != "invalid_grant" {
						t.Fatalf("round %d: the winner's new refresh token on %s: %+v, want invalid_grant", round, on.URL(), r)
					}
				}
				bustest.WaitFor(t, 5*time.Second, func() error {
					return wantVerdict(t, rs.sc, winner.resp.AccessToken, 401, "revoked")
				})
			}
		})
	}
}

// TestReplicas_ReuseOnOneEndsSessionEverywhere: a token used on a and
// presented again on b is reuse: the session ends on every replica and
// verifiers refuse its access tokens.
func TestReplicas_ReuseOnOneEndsSessionEverywhere(t *testing.T) {
	rs := runReplicas(t, false, 2, issuer.Config{})
	a, b := rs.issuers[0], rs.issuers[1]
	sess := createSession(t, a, issuer.SessionRequest{Subject: "kim"})
	r := refreshAt(t, a, sess.RefreshToken, "", "", "")
	if r.code != 200 {
		t.Fatalf("refresh on a: %+v", r)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, rs.sc, r.resp.AccessToken, 200, "") })
	if got := refreshAt(t, b, sess.RefreshToken, "", "", ""); got.code != 400 || !strings.Contains(got.desc, "already used") {
		t.Fatalf("the used token on b: %+v, want reuse", got)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, rs.sc, r.resp.AccessToken, 401, "revoked") })
	for _, on := range rs.issuers {
		if got := refreshAt(t, on, r.resp.RefreshToken, "", "", ""); got.code != 400 || got.desc != "session ended" {
			t.Fatalf("the current token on %s after reuse: %+v, want session ended", on.URL(), got)
		}
		if got := listSessions(t, on, "kim"); len(got) != 0 {
			t.Fatalf("sessions of kim on %s after reuse: %v", on.URL(), got)
		}
	}
}

// TestReplicas_OneStopsTheOthersServe runs three replicas on a three-node
// cluster. Replica a stops: b and c refresh the sessions a created, and
// create and refresh new ones.
func TestReplicas_OneStopsTheOthersServe(t *testing.T) {
	rs := runReplicas(t, true, 3, issuer.Config{})
	a, b, c := rs.issuers[0], rs.issuers[1], rs.issuers[2]
	var tokens []string
	for i := range 4 {
		tokens = append(tokens, createSession(t, a, issuer.SessionRequest{Subject: fmt.Sprintf("lee-%d", i)}).RefreshToken)
	}
	rs.stops[0]()
	for i, rt := range tokens {
		var access string
		for j, on := range []*issuer.Service{b, c, b} {
			r := refreshAt(t, on, rt, "", "", "")
			if r.code != 200 {
				t.Fatalf("session %d of stopped a, refresh %d on %s: %+v", i, j, on.URL(), r)
			}
			rt, access = r.resp.RefreshToken, r.resp.AccessToken
		}
		bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, rs.sc, access, 200, "") })
	}
	fresh := createSession(t, c, issuer.SessionRequest{Subject: "lee-new"})
	r := refreshAt(t, b, fresh.RefreshToken, "", "", "")
	if r.code != 200 {
		t.Fatalf("refresh on b of a session created on c after a stopped: %+v", r)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, rs.sc, r.resp.AccessToken, 200, "") })
}

// TestReplicas_TimeoutsAcrossReplicas: the idle and absolute timeouts hold
// whichever replica a session is refreshed on.
func TestReplicas_TimeoutsAcrossReplicas(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	rs := runReplicas(t, false, 2, issuer.Config{SessionTTL: time.Hour, SessionIdle: 10 * time.Minute, Now: now})
	a, b := rs.issuers[0], rs.issuers[1]

	idle := createSession(t, a, issuer.SessionRequest{Subject: "mia"})
	clock.Add(int64(9 * time.Minute))
	r := refreshAt(t, b, idle.RefreshToken, "", "", "")
	if r.code != 200 {
		t.Fatalf("refresh on b within the idle timeout: %+v", r)
	}
	clock.Add(int64(11 * time.Minute))
	if r := refreshAt(t, a, r.resp.RefreshToken, "", "", ""); r.code != 400 || r.desc != "session expired" {
		t.Fatalf("refresh on a after the idle timeout: %+v, want session expired", r)
	}

	abs := createSession(t, b, issuer.SessionRequest{Subject: "mia"})
	rt := abs.RefreshToken
	for step := 1; step <= 7; step++ { // every 9 minutes: never idle, past the hour at step 7
		clock.Add(int64(9 * time.Minute))
		r := refreshAt(t, rs.issuers[step%2], rt, "", "", "")
		switch {
		case step < 7 && r.code != 200:
			t.Fatalf("refresh at %d minutes: %+v", 9*step, r)
		case step == 7 && (r.code != 400 || r.desc != "session expired"):
			t.Fatalf("refresh at 63 minutes of a 1h session: %+v, want session expired", r)
		}
		rt = r.resp.RefreshToken
	}
}
