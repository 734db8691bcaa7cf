//go:build linux

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
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
