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
	"github.com/heraldsec/herald/issuer"
)

// form posts an application/x-www-form-urlencoded request and returns the
// status and decoded JSON body.
func form(t *testing.T, endpoint string, vals url.Values, basicID, basicSecret string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", endpoint, strings.NewReader(vals.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body) // empty for some endpoints
	return resp.StatusCode, body, resp.Header
}

func refresh(t *testing.T, svc *issuer.Service, rt string) (int, map[string]any) {
	t.Helper()
	code, body, _ := form(t, svc.URL()+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "", "")
	return code, body
}

func TestRefresh_RotationChainThenReuseRevokesSession(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	scs := runFleet(t, s, svc, 3)
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "erin"})
	chain := []string{sess.RefreshToken}
	access := sess.AccessToken
	for i := range 100 {
		code, body := refresh(t, svc, chain[len(chain)-1])
		if code != 200 {
			t.Fatalf("refresh %d: %d %v", i, code, body)
		}
		if body["session_id"] != sess.SessionID || body["refresh_token"] == chain[len(chain)-1] {
			t.Fatalf("refresh %d: %v: want the same session and a new refresh token", i, body)
		}
		chain = append(chain, body["refresh_token"].(string))
		access = body["access_token"].(string)
	}
	for _, sc := range scs {
		bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, access, 200, "") })
	}

	code, body := refresh(t, svc, chain[50]) // a used token: reuse
	if code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse of refresh token 50: %d %v, want 400 invalid_grant", code, body)
	}
	for _, sc := range scs {
		bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, access, 401, "revoked") })
	}
	if code, body := refresh(t, svc, chain[len(chain)-1]); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("latest refresh token after reuse: %d %v, want invalid_grant", code, body)
	}
}

func TestRefresh_ConcurrentUseHasOneWinner(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	for round := range 3 {
		sess := createSession(t, svc, issuer.SessionRequest{Subject: fmt.Sprintf("race-%d", round)})
		var wins, losses atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				code, body := refresh(t, svc, sess.RefreshToken)
				switch {
				case code == 200:
					wins.Add(1)
				case code == 400 && body["error"] == "invalid_grant":
					losses.Add(1)
				default:
					t.Errorf("refresh: %d %v", code, body)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || losses.Load() != 15 {
			t.Fatalf("round %d: %d winners, %d losers; want exactly 1 and 15", round, wins.Load(), losses.Load())
		}
	}
}

func TestSessions_ListEndAndTimeouts(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	a := createSession(t, svc, issuer.SessionRequest{Subject: "frank"})
	b := createSession(t, svc, issuer.SessionRequest{Subject: "frank"})
	createSession(t, svc, issuer.SessionRequest{Subject: "frankie"})

	list := func() []string {
		code, body := call(t, "GET", svc.URL()+"/v1/sessions?sub=frank", adminToken, nil)
		if code != 200 {
			t.Fatalf("list sessions: %d %s", code, body)
		}
		var out struct {
			Sessions []issuer.Session `json:"sessions"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range out.Sessions {
			ids = append(ids, s.ID)
		}
		return ids
	}
	if got := list(); len(got) != 2 {
		t.Fatalf("sessions of frank = %v, want 2", got)
	}
	code, body := call(t, "DELETE", svc.URL()+"/v1/sessions/"+a.SessionID, adminToken, nil)
	if code != 200 {
		t.Fatalf("end session: %d %s", code, body)
	}
	if got := list(); len(got) != 1 || got[0] != b.SessionID {
		t.Fatalf("sessions after ending one = %v, want [%s]", got, b.SessionID)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, a.AccessToken, 401, "revoked") })
	if err := wantVerdict(t, sc, b.AccessToken, 200, ""); err != nil {
		t.Fatal(err)
	}
	if code, body := refresh(t, svc, a.RefreshToken); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh of ended session: %d %v", code, body)
	}
	if code, _ := call(t, "DELETE", svc.URL()+"/v1/sessions/nope", adminToken, nil); code != 404 {
		t.Fatalf("end unknown session: %d, want 404", code)
	}
	if code, _ := call(t, "GET", svc.URL()+"/v1/sessions", adminToken, nil); code != 400 {
		t.Fatalf("list without sub: %d, want 400", code)
	}

	// A subject revocation also stops refreshes of that subject's sessions.
	revoke(t, svc, "subject", "frank")
	if code, body := refresh(t, svc, b.RefreshToken); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh after subject revocation: %d %v", code, body)
	}
}

func TestSessions_IdleAndAbsoluteTimeouts(t *testing.T) {
	s := bustest.RunServer(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	conn := bustest.Connect(t, s)
	svc, err := issuer.Open(t.Context(), issuer.Config{
		EventKeyFile: bustest.EventKeyFile(t),
		DataDir:      t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet, IssuerURL: "https://issuer.test",
		SessionTTL: time.Hour, SessionIdle: 10 * time.Minute, Now: now,
	}, conn)
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, svc.Run, func() { svc.Close() })

	idle := createSession(t, svc, issuer.SessionRequest{Subject: "gina"})
	clock.Add(int64(9 * time.Minute))
	code, body := refresh(t, svc, idle.RefreshToken)
	if code != 200 {
		t.Fatalf("refresh within the idle timeout: %d %v", code, body)
	}
	clock.Add(int64(11 * time.Minute))
	if code, body := refresh(t, svc, body["refresh_token"].(string)); code != 400 || body["error_description"] != "session expired" {
		t.Fatalf("refresh after the idle timeout: %d %v, want session expired", code, body)
	}

	abs := createSession(t, svc, issuer.SessionRequest{Subject: "gina"})
	rt := abs.RefreshToken
	for range 7 { // 7 x 9 min: never idle, but past the hour
		clock.Add(int64(9 * time.Minute))
		code, body := refresh(t, svc, rt)
		if code != 200 {
			if body["error_description"] != "session expired" || now().Sub(time.Unix(0, 0)) < 0 {
				t.Fatalf("refresh: %d %v", code, body)
			}
			return // ended by the absolute lifetime
		}
		rt = body["refresh_token"].(string)
	}
	t.Fatal("session outlived its absolute lifetime of 1h")
}

func TestClientCredentials_CreateRotateRevoke(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)

	code, body := call(t, "POST", svc.URL()+"/v1/clients", adminToken, issuer.ClientRequest{Name: "billing", Scope: "invoices:read invoices:write"})
	if code != 201 {
		t.Fatalf("create client: %d %s", code, body)
	}
	var cl issuer.Client
	if err := json.Unmarshal(body, &cl); err != nil || cl.Secret == "" || cl.ID == "" {
		t.Fatalf("client %s: %v", body, err)
	}
	token := func(id, secret, scope string) (int, map[string]any) {
		vals := url.Values{"grant_type": {"client_credentials"}}
		if scope != "" {
			vals.Set("scope", scope)
		}
		code, body, _ := form(t, svc.URL()+"/oauth2/token", vals, id, secret)
		return code, body
	}
	code, tok := token(cl.ID, cl.Secret, "invoices:read")
	if code != 200 || tok["scope"] != "invoices:read" || tok["refresh_token"] != nil {
		t.Fatalf("client_credentials: %d %v", code, tok)
	}
	access := tok["access_token"].(string)
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, access, 200, "") })
	if c := claimsOf(t, access); c.Subject != cl.ID || c.ClientID != cl.ID {
		t.Fatalf("claims %+v: want sub and client_id %s", c, cl.ID)
	}
	if code, body := token(cl.ID, "wrong", ""); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", code, body)
	}
	if code, body := token(cl.ID, cl.Secret, "admin"); code != 400 || body["error"] != "invalid_scope" {
		t.Fatalf("scope not allowed: %d %v", code, body)
	}

	code, body = call(t, "POST", svc.URL()+"/v1/clients/"+cl.ID+"/secret", adminToken, nil)
	var rotated issuer.Client
	if code != 200 || json.Unmarshal(body, &rotated) != nil || rotated.Secret == "" || rotated.Secret == cl.Secret {
		t.Fatalf("rotate secret: %d %s", code, body)
	}
	if code, _ := token(cl.ID, cl.Secret, ""); code != 401 {
		t.Fatalf("old secret after rotation: %d, want 401", code)
	}
	if code, _ := token(cl.ID, rotated.Secret, ""); code != 200 {
		t.Fatalf("new secret: %d, want 200", code)
	}

	if code, body := call(t, "DELETE", svc.URL()+"/v1/clients/"+cl.ID, adminToken, nil); code != 200 {
		t.Fatalf("delete client: %d %s", code, body)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, access, 401, "revoked") })
	if code, body := token(cl.ID, rotated.Secret, ""); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("token for a revoked client: %d %v", code, body)
	}
	code, body = call(t, "GET", svc.URL()+"/v1/clients", adminToken, nil)
	if code != 200 || strings.Contains(string(body), "secret") {
		t.Fatalf("list clients: %d %s (must show no secrets)", code, body)
	}
}

func TestKeyRotation_UnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test: skipped under -short")
	}
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	svc, err := issuer.Open(t.Context(), issuer.Config{
		EventKeyFile: bustest.EventKeyFile(t),
		DataDir:      t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet, IssuerURL: "https://issuer.test",
		KeyRotation: time.Second,
	}, conn)
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, svc.Run, func() { svc.Close() })
	scs := runFleet(t, s, svc, 3)

	kids := map[string]bool{}
	var tokens []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sess := createSession(t, svc, issuer.SessionRequest{Subject: "load"})
		kids[headerKid(t, sess.AccessToken)] = true
		tokens = append(tokens, sess.AccessToken)
		// Every verifier accepts it at once: its key was published a
		// rotation before it signed.
		for _, sc := range scs {
			if _, err := sc.Verifier().Verify(t.Context(), sess.AccessToken); err != nil {
				t.Fatalf("token signed by %s refused by %s right after issue: %v", headerKid(t, sess.AccessToken), sc.URL(), err)
			}
		}
	}
	if len(kids) < 8 {
		t.Fatalf("%d signing keys used in 10s of 1s rotations, want at least 8", len(kids))
	}
	for _, tok := range tokens { // retired keys still verify their tokens
		for _, sc := range scs {
			if _, err := sc.Verifier().Verify(t.Context(), tok); err != nil {
				t.Fatalf("token of retired key %s refused: %v", headerKid(t, tok), err)
			}
		}
	}
	t.Logf("%d tokens, %d keys", len(tokens), len(kids))
}

func TestKeys_RetiredKeyLeavesWhenItsTokensExpire(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	svc, err := issuer.Open(t.Context(), issuer.Config{
		EventKeyFile: bustest.EventKeyFile(t),
		DataDir:      t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet, IssuerURL: "https://issuer.test",
		AccessTTL: time.Second, MaxAccessTTL: time.Second, Leeway: time.Second, SessionTTL: time.Minute,
	}, conn)
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, svc.Run, func() { svc.Close() })
	first := headerKid(t, createSession(t, svc, issuer.SessionRequest{Subject: "h"}).AccessToken)
	code, body := call(t, "POST", svc.URL()+"/v1/keys/rotate", adminToken, nil)
	var rot issuer.KeyRotation
	if code != 200 || json.Unmarshal(body, &rot) != nil || rot.Retired != first || rot.Current == first {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if kid := headerKid(t, createSession(t, svc, issuer.SessionRequest{Subject: "h"}).AccessToken); kid != rot.Current {
		t.Fatalf("signed with %s after rotation, want %s", kid, rot.Current)
	}
	jwks := func() string {
		_, body := call(t, "GET", svc.URL()+"/.well-known/jwks.json", "", nil)
		return string(body)
	}
	if !strings.Contains(jwks(), first) || !strings.Contains(jwks(), rot.Next) {
		t.Fatalf("jwks right after rotation lacks the retired or the next key: %s", jwks())
	}
	bustest.WaitFor(t, 20*time.Second, func() error {
		if strings.Contains(jwks(), first) {
			return fmt.Errorf("retired key %s still in jwks", first)
		}
		return nil
	})
	kv, err := conn.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), first); err == nil {
		t.Fatalf("retired key %s still in HERALD_KEYS", first)
	}
}

func TestOAuth_MetadataRevokeIntrospect(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)

	code, body := call(t, "GET", svc.URL()+"/.well-known/oauth-authorization-server", "", nil)
	var meta map[string]any
	if code != 200 || json.Unmarshal(body, &meta) != nil || meta["issuer"] != svc.IssuerURL() ||
		meta["token_endpoint"] != svc.IssuerURL()+"/oauth2/token" || meta["jwks_uri"] == nil {
		t.Fatalf("metadata: %d %s", code, body)
	}

	introspect := func(tok string) issuer.Introspection { return introspectAt(t, svc, tok) }
	a := createSession(t, svc, issuer.SessionRequest{Subject: "ivan", Scope: "read"})
	bustest.WaitFor(t, 5*time.Second, func() error {
		if got := introspect(a.AccessToken); !got.Active || got.Sub != "ivan" || got.Scope != "read" {
			return fmt.Errorf("introspect access token = %v", got)
		}
		return nil
	})
	if got := introspect(a.RefreshToken); !got.Active || got.TokenType != "refresh_token" {
		t.Fatalf("introspect refresh token = %v", got)
	}
	if code, _, _ := form(t, svc.URL()+"/oauth2/introspect", url.Values{"token": {a.AccessToken}}, "", ""); code != 401 {
		t.Fatalf("introspect without credentials: %d, want 401", code)
	}

	// RFC 7009: the holder revokes the access token, then the refresh token.
	if code, _, _ := form(t, svc.URL()+"/oauth2/revoke", url.Values{"token": {a.AccessToken}}, "", ""); code != 200 {
		t.Fatalf("revoke access token: %d", code)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, a.AccessToken, 401, "revoked") })
	bustest.WaitFor(t, 5*time.Second, func() error {
		if got := introspect(a.AccessToken); got.Active || got.Reason != "revoked" {
			return fmt.Errorf("introspect revoked token = %v", got)
		}
		return nil
	})
	if code, _, _ := form(t, svc.URL()+"/oauth2/revoke", url.Values{"token": {a.RefreshToken}}, "", ""); code != 200 {
		t.Fatalf("revoke refresh token: %d", code)
	}
	if code, body := refresh(t, svc, a.RefreshToken); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh after RFC 7009 revocation: %d %v", code, body)
	}
	if code, _, _ := form(t, svc.URL()+"/oauth2/revoke", url.Values{"token": {"garbage"}}, "", ""); code != 200 {
		t.Fatalf("revoke garbage: %d, want 200 (RFC 7009 section 2.2)", code)
	}
	if code, body, _ := form(t, svc.URL()+"/oauth2/token", url.Values{"grant_type": {"password"}}, "", ""); code != 400 || body["error"] != "unsupported_grant_type" {
		t.Fatalf("password grant: %d %v", code, body)
	}
}

func TestOAuth_RateLimit(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	svc, err := issuer.Open(t.Context(), issuer.Config{
		EventKeyFile: bustest.EventKeyFile(t),
		DataDir:      t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet, RateLimit: 1, ClientRateLimit: -1,
	}, conn)
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, svc.Run, func() { svc.Close() })
	var limited http.Header
	for i := range 10 {
		code, body, hdr := form(t, svc.URL()+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"hrt_x"}}, "", "")
		if code == 429 {
			if body["error"] == nil {
				t.Fatalf("429 without an error code: %v", body)
			}
			limited = hdr
			break
		}
		if code != 400 {
			t.Fatalf("request %d: %d %v", i, code, body)
		}
	}
	if limited == nil || limited.Get("Retry-After") == "" {
		t.Fatalf("no 429 with Retry-After after 10 requests at a limit of 1/s (burst 2)")
	}
}

// TestReplicas_RevocationThroughOneStopsRefreshOnAll: a subject revocation
// made through one issuer replica reaches the other through the stream, and
// that replica stops refreshing the subject's sessions too.
func TestReplicas_RevocationThroughOneStopsRefreshOnAll(t *testing.T) {
	s := bustest.RunServer(t)
	a, _ := runIssuer(t, s, t.TempDir())
	b, _ := runIssuer(t, s, t.TempDir())
	sess := createSession(t, a, issuer.SessionRequest{Subject: "erin"})
	res := revoke(t, b, "subject", "erin")
	bustest.WaitFor(t, 5*time.Second, func() error {
		if in := introspectAt(t, a, sess.AccessToken); in.Active {
			return fmt.Errorf("replica a has not applied revocation %d yet", res.Seq)
		}
		return nil
	})
	if code, body := refresh(t, a, sess.RefreshToken); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh on replica a after a subject revocation through b: %d %v", code, body)
	}
}
