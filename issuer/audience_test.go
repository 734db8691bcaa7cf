package issuer_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// TestAudience_EachServiceAcceptsOnlyItsOwn: a token for service A is
// refused by service B's sidecar, and a client gets only the audiences and
// scopes it is allowed.
func TestAudience_EachServiceAcceptsOnlyItsOwn(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sidecar := func(aud string) *sidecar.Sidecar {
		sc, err := sidecar.Open(sidecar.Config{
			Verifier: verifier.Config{Issuer: svc.IssuerURL(), Audience: aud},
			DataDir:  t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet,
		}, bustest.Connect(t, s))
		if err != nil {
			t.Fatal(err)
		}
		bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
		return sc
	}
	orders, billing := sidecar("orders"), sidecar("billing")
	waitReady(t, orders, billing)

	code, raw := call(t, "POST", svc.URL()+"/v1/clients", adminToken,
		issuer.ClientRequest{Name: "shop", Scope: "orders:read", Audiences: []string{"orders"}})
	var cl issuer.Client
	if code != 201 || json.Unmarshal(raw, &cl) != nil {
		t.Fatalf("create client: %d %s", code, raw)
	}
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "u", ClientID: cl.ID, Scope: "orders:read", Audience: []string{"orders"}})
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, orders, sess.AccessToken, 200, "") })
	if err := wantVerdict(t, billing, sess.AccessToken, 401, "wrong_audience"); err != nil {
		t.Fatalf("token for orders at billing: %v", err)
	}
	for name, req := range map[string]issuer.SessionRequest{
		"audience not allowed": {Subject: "u", ClientID: cl.ID, Audience: []string{"billing"}},
		"scope not allowed":    {Subject: "u", ClientID: cl.ID, Scope: "orders:write", Audience: []string{"orders"}},
	} {
		if code, body := call(t, "POST", svc.URL()+"/v1/sessions", adminToken, req); code != 400 {
			t.Errorf("%s: %d %s, want 400", name, code, body)
		}
	}
}

// TestOAuth_RevokeAndIntrospectAnyAudience: RFC 7009 revocation and RFC
// 7662 introspection judge a token the issuer signed for another service
// than its own audience: introspection says it is active, revocation
// revokes it, and that service's sidecar then refuses it.
func TestOAuth_RevokeAndIntrospectAnyAudience(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: svc.IssuerURL(), Audience: "svc-a"},
		DataDir:  t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet,
	}, bustest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
	waitReady(t, sc)
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "u", Audience: []string{"svc-a"}})
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, sess.AccessToken, 200, "") })
	if in := introspectAt(t, svc, sess.AccessToken); !in.Active || in.Jti == "" {
		t.Fatalf("introspection of a token for svc-a: %+v, want active", in)
	}
	if code, body, _ := form(t, svc.URL()+"/oauth2/revoke", url.Values{"token": {sess.AccessToken}}, "", ""); code != 200 {
		t.Fatalf("revoke: %d %v", code, body)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { // once the issuer's own denylist has it
		if in := introspectAt(t, svc, sess.AccessToken); in.Active || in.Reason != "revoked" {
			return fmt.Errorf("introspection after revocation: %+v, want inactive, revoked", in)
		}
		return nil
	})
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, sess.AccessToken, 401, "revoked") })
}
