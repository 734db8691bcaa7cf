//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
)

// logoutReceiver stands in for a back-channel logout endpoint: it keeps
// the logout tokens POSTed to it, in order.
type logoutReceiver struct {
	srv    *httptest.Server
	tokens chan string
}

func newLogoutReceiver(t *testing.T) *logoutReceiver {
	r := &logoutReceiver{tokens: make(chan string, 16)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "want a form POST", http.StatusBadRequest)
			return
		}
		tok := req.PostFormValue("logout_token")
		if tok == "" {
			http.Error(w, "no logout_token", http.StatusBadRequest)
			return
		}
		select {
		case r.tokens <- tok:
		default:
			http.Error(w, "too many logout tokens", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// TestIdP_ProviderLoginAndLogout holds the OpenID provider harness the
// identity provider tests stand on: a browser login yields a JWT access
// token for the API, signed by a key from the provider's jwks_uri, with
// the session's sid; two logins of one user are two sessions; logging one
// out POSTs a well-formed logout token for its sid, and only its, to the
// back-channel URI; and after the provider restarts with a rotated key its
// new tokens are signed with the new key while the old one stays
// published.
func TestIdP_ProviderLoginAndLogout(t *testing.T) {
	receiver := newLogoutReceiver(t)
	client := newIDPClient(t)
	oldKey, newKey := newIDPKey(t, "idp-key-1"), newIDPKey(t, "idp-key-2")
	p := startOIDCProvider(t, idpConfig{RedirectURI: client.redirectURI(), BackchannelLogoutURI: receiver.srv.URL + "/oidc/backchannel-logout"}, oldKey)
	if !p.meta.BackchannelLogout || !p.meta.BackchannelSession || p.meta.EndSessionEndpoint == "" {
		t.Fatalf("discovery %+v: want back-channel logout with sessions and an end_session_endpoint", p.meta)
	}
	b := newIDPBrowser(t)

	laptop := b.login(p, client, "alice")
	phone := b.login(p, client, "alice")
	if laptop.kid != oldKey.kid || phone.kid != oldKey.kid {
		t.Errorf("access tokens signed with %q and %q, want %q", laptop.kid, phone.kid, oldKey.kid)
	}
	if laptop.claims.SID == phone.claims.SID {
		t.Fatalf("two browser logins share sid %q: want two sessions", laptop.claims.SID)
	}

	laptop.logout(p)
	// The provider shows its signed-out page only after the back-channel
	// POST was answered: the token is there now, and only one.
	select {
	case tok := <-receiver.tokens:
		c, err := p.parseLogout(tok)
		if err != nil {
			t.Fatal(err)
		}
		if c.SID != laptop.claims.SID || c.Subject != "alice" {
			t.Fatalf("logout token for sid %q sub %q, want the laptop's sid %q and alice", c.SID, c.Subject, laptop.claims.SID)
		}
	default:
		t.Fatal("the provider signed the laptop out without POSTing a logout token")
	}
	select {
	case tok := <-receiver.tokens:
		c, _ := p.parseLogout(tok)
		t.Fatalf("a second logout token, for sid %q: only the laptop signed out", c.SID)
	default:
	}

	p.restart(newKey, oldKey)
	tablet := b.login(p, client, "alice")
	if tablet.kid != newKey.kid {
		t.Fatalf("after the rotation the access token is signed with %q, want %q", tablet.kid, newKey.kid)
	}
	// The old key is still published: a token signed before the rotation
	// still verifies against the provider's keys.
	if c, kid := p.parseAccess(phone.tokens.AccessToken); kid != oldKey.kid || c.SID != phone.claims.SID {
		t.Fatalf("the phone's token after the rotation: kid %q sid %q", kid, c.SID)
	}
}

// idpStack is a Herald deployment trusting a real OpenID provider: the
// provider, whose back-channel logout URI is the issuer's; one issuer
// trusting it; three verifiers in front of an upstream, two as proxies and
// one answering forward-auth requests; and a browser to sign in with.
type idpStack struct {
	t         *testing.T
	p         *oidcProvider
	client    *idpClient
	b         *idpBrowser
	fleet     *fleet
	iss       *issuerProc
	verifiers []idpVerifier
}

// idpVerifier is one verifier sidecar of the stack.
type idpVerifier struct {
	name  string
	url   string
	proxy bool // proxy mode: else forward-auth, answering /v1/verify
}

// identityHeaders are the headers the stack's upstream reports back.
var identityHeaders = []string{verifier.HeaderIssuer, verifier.HeaderSubject, verifier.HeaderSession, verifier.HeaderClient}

// startIDPStack starts the provider signing with key, the issuer trusting
// it, and the verifiers, and waits until the issuer holds the provider's
// keys.
func startIDPStack(t *testing.T, key idpKey) *idpStack {
	t.Helper()
	st := &idpStack{t: t, client: newIDPClient(t), fleet: newFleet(t)}
	heraldAddr := freeAddr(t) // the provider must know Herald's logout URI before either starts
	st.p = startOIDCProvider(t, idpConfig{RedirectURI: st.client.redirectURI(),
		BackchannelLogoutURI: "http://" + heraldAddr + issuer.BackChannelLogoutPath}, key)

	dir := t.TempDir()
	trust := filepath.Join(dir, "trust.json")
	b, _ := json.Marshal(map[string]any{"issuers": []map[string]any{{
		"issuer": st.p.issuer, "audience": []string{idpAudience}, "client_id": idpClientID}}})
	if err := os.WriteFile(trust, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st.iss = st.fleet.startIssuer(filepath.Join(dir, "issuer"), freeAddr(t), "--trust-issuers-file", trust, "--http", heraldAddr)
	if st.iss.url != "http://"+heraldAddr {
		t.Fatalf("issuer serves %s, want http://%s", st.iss.url, heraldAddr)
	}
	t.Setenv("HERALD_ADMIN_TOKEN", st.fleet.admin)
	bustest.WaitFor(t, 20*time.Second, func() error {
		out := runCmd(t, "status", "--fleet", "--issuer-url", st.iss.url)
		if want := fmt.Sprintf("trusted issuer %s: 1 keys; ok", st.p.issuer); !strings.Contains(out, want) {
			return fmt.Errorf("status:\n%s\nwant %q", out, want)
		}
		return nil
	})

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := map[string]string{}
		for _, h := range identityHeaders {
			seen[h] = r.Header.Get(h)
		}
		json.NewEncoder(w).Encode(seen)
	}))
	t.Cleanup(upstream.Close)
	for i, proxy := range []bool{true, true, false} {
		name := fmt.Sprintf("verifier-%d", i+1)
		var extra []string
		if proxy {
			extra = []string{"--upstream", upstream.URL}
		}
		_, url := st.fleet.readyVerifier(filepath.Join(dir, name), st.iss.nats, extra...)
		st.verifiers = append(st.verifiers, idpVerifier{name: name, url: url, proxy: proxy})
	}
	st.b = newIDPBrowser(t)
	return st
}

// call sends token to v as a client of the upstream would: through the
// proxy, or as a forward-auth request. It returns the status and, when
// the request was let through, the identity headers the upstream saw or
// the verifier answered; otherwise the verifier's WWW-Authenticate.
func (st *idpStack) call(v idpVerifier, token string) (int, map[string]string) {
	st.t.Helper()
	target := v.url + "/orders"
	if !v.proxy {
		target = v.url + "/v1/verify"
	}
	req, err := http.NewRequestWithContext(st.t.Context(), "GET", target, nil)
	if err != nil {
		st.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(verifier.HeaderSubject, "mallory") // a client's own identity header never reaches the upstream
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		st.t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, map[string]string{"WWW-Authenticate": resp.Header.Get("WWW-Authenticate")}
	}
	seen := map[string]string{}
	if v.proxy {
		if err := json.Unmarshal(body, &seen); err != nil {
			st.t.Fatalf("%s: the upstream's answer %.200s: %v", v.name, body, err)
		}
	} else {
		for _, h := range identityHeaders {
			seen[h] = resp.Header.Get(h)
		}
	}
	return resp.StatusCode, seen
}

// accepted reports nil when every verifier lets s's access token through
// with the identity of its claims.
func (st *idpStack) accepted(s *idpSession) error {
	want := map[string]string{verifier.HeaderIssuer: st.p.issuer, verifier.HeaderSubject: s.user,
		verifier.HeaderSession: s.claims.SID, verifier.HeaderClient: idpClientID}
	for _, v := range st.verifiers {
		code, seen := st.call(v, s.tokens.AccessToken)
		if code != http.StatusOK {
			return fmt.Errorf("%s refuses the provider's token of sid %s: %d", v.name, s.claims.SID, code)
		}
		if !maps.Equal(seen, want) {
			return fmt.Errorf("%s identity %v, want %v", v.name, seen, want)
		}
	}
	return nil
}

// refused reports nil when every verifier refuses s's access token as
// revoked.
func (st *idpStack) refused(s *idpSession) error {
	for _, v := range st.verifiers {
		code, seen := st.call(v, s.tokens.AccessToken)
		if code != http.StatusUnauthorized || !strings.Contains(seen["WWW-Authenticate"], `error_description="revoked"`) {
			return fmt.Errorf("%s answers %d %v to the token of sid %s, want 401 revoked", v.name, code, seen, s.claims.SID)
		}
	}
	return nil
}

// logout signs s out at the provider and checks that the provider
// delivered its logout token to Herald: the issuer answered 200, which it
// does only once the revocation is acknowledged by JetStream.
func (st *idpStack) logout(s *idpSession) {
	st.t.Helper()
	s.logout(st.p)
	delivered := "backchannel logout delivered client=" + idpClientID + " sub=" + s.user + " sid=" + s.claims.SID
	if logs := st.p.proc.logs.String(); !strings.Contains(logs, delivered) {
		st.t.Fatalf("the provider did not deliver the logout of sid %s to Herald:\n%s", s.claims.SID, lastLines(logs, 10))
	}
}

// TestIdP_LogoutEndsTheSessionOnEveryVerifier: with Herald trusting a
// real OpenID provider, a user signed in through the provider's pages in
// a browser calls a service through three verifiers (two proxies and a
// forward-auth endpoint) with the provider's access token, and each lets
// it through with the identity of its claims: the provider's iss, the
// user, the session and the client. When the user logs out at the
// provider, which POSTs its logout token to Herald, every verifier
// refuses that token; the same user's session in another browser is not
// touched.
func TestIdP_LogoutEndsTheSessionOnEveryVerifier(t *testing.T) {
	st := startIDPStack(t, newIDPKey(t, "idp-key-1"))
	laptop := st.b.login(st.p, st.client, "alice")
	phone := st.b.login(st.p, st.client, "alice")
	// The verifiers learn the provider's keys from the bus, soon after
	// the issuer published them.
	bustest.WaitFor(t, 10*time.Second, func() error { return st.accepted(laptop) })
	if err := st.accepted(phone); err != nil {
		t.Fatal(err)
	}

	st.logout(laptop)
	bustest.WaitFor(t, 5*time.Second, func() error { return st.refused(laptop) })
	if err := st.accepted(phone); err != nil {
		t.Fatalf("after the laptop's logout: %v", err)
	}
}

// TestIdP_RotatedKeyVerifiesWithoutRestart: when the provider rotates its
// signing key, its first token signed with the new key makes a verifier
// ask the issuer for the key, and every verifier then accepts it, without
// a restart of Herald; tokens signed before the rotation still verify, and
// a logout token signed with the new key still ends its session
// everywhere.
func TestIdP_RotatedKeyVerifiesWithoutRestart(t *testing.T) {
	oldKey, newKey := newIDPKey(t, "idp-key-1"), newIDPKey(t, "idp-key-2")
	st := startIDPStack(t, oldKey)
	before := st.b.login(st.p, st.client, "alice")
	bustest.WaitFor(t, 10*time.Second, func() error { return st.accepted(before) })

	st.p.restart(newKey, oldKey)
	after := st.b.login(st.p, st.client, "bob")
	if after.kid != newKey.kid {
		t.Fatalf("after the rotation the provider signs with %q, want %q", after.kid, newKey.kid)
	}
	// The issuer fetches a provider's key set at most once every 30
	// seconds, however many verifiers ask: the first ask may come within
	// 30 seconds of the fetch at start, and the verifier asks again 10
	// seconds later.
	bustest.WaitFor(t, 60*time.Second, func() error { return st.accepted(after) })
	if err := st.accepted(before); err != nil {
		t.Fatalf("a token signed before the rotation: %v", err)
	}

	st.logout(after)
	bustest.WaitFor(t, 5*time.Second, func() error { return st.refused(after) })
	if err := st.accepted(before); err != nil {
		t.Fatalf("after bob's logout: %v", err)
	}
}
