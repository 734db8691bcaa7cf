package issuer_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/issuer"
)

// TestAttackSET_CannotRevokeHeraldsOwnTokens: a trusted transmitter's SET
// whose subject names Herald's own issuer (iss_sub or jwt_id, even inside
// a complex subject) is only recorded: no external transmitter speaks for
// Herald, so it can neither revoke Herald's tokens nor end Herald's
// sessions. The same SET naming the transmitter's own issuer revokes.
func TestAttackSET_CannotRevokeHeraldsOwnTokens(t *testing.T) {
	idp := federationtest.NewIdP(t)
	svc, scs := runTrusting(t, 1, func(is *federation.Issuer) { is.PushCredential = "idp-ssf" }, idp)
	cred := credential(t, svc, "idp-ssf", issuer.ScopeSignals)
	own := createSession(t, svc, issuer.SessionRequest{Subject: "alice"})
	heraldIss := svc.IssuerURL()
	jti := claimsOf(t, own.AccessToken).ID
	before := revocationSeq(t, svc)
	for name, sub := range map[string]map[string]any{
		"iss_sub of Herald":          {"format": "iss_sub", "iss": heraldIss, "sub": "alice"},
		"jwt_id of Herald":           {"format": "jwt_id", "iss": heraldIss, "jti": jti},
		"complex user iss_sub":       {"format": "complex", "user": map[string]any{"format": "iss_sub", "iss": heraldIss, "sub": "alice"}},
		"complex user jwt_id Herald": {"format": "complex", "user": map[string]any{"format": "jwt_id", "iss": heraldIss, "jti": jti}},
	} {
		code, body := push(t, svc, cred, "application/secevent+jwt", idp.SET(t, credentialChange, sub, nil))
		if code != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202 (recorded)", name, code, body)
		}
	}
	if after := revocationSeq(t, svc); after != before {
		t.Errorf("a provider's SETs revoked Herald's own tokens: seq %d -> %d", before, after)
	}
	// A revocation the provider may make, pushed after: once it reached
	// the sidecar, anything published before it has too.
	bob := idp.AccessToken(t, "bob", "b-1")
	if code, body := push(t, svc, cred, "application/secevent+jwt",
		idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": "bob"}, nil)); code != http.StatusAccepted {
		t.Fatalf("own subject: %d %s", code, body)
	}
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, scs[0], bob, http.StatusUnauthorized, "revoked") })
	if err := wantVerdict(t, scs[0], own.AccessToken, http.StatusOK, ""); err != nil {
		t.Errorf("Herald's own token after a provider's SET naming it: %v", err)
	}
	code, raw := call(t, "GET", svc.URL()+"/v1/audit?action=signal.push", adminToken, nil)
	if code != http.StatusOK || strings.Count(string(raw), "this issuer's own tokens") != 4 {
		t.Errorf("audit of the SETs naming Herald: %d %s, want four recorded with a note", code, raw)
	}
}

// TestAttackLogout_ConcurrentReplicas: the same logout token posted many
// times at once, half to each of two issuer replicas, gets exactly one
// 200 and causes exactly one revocation.
func TestAttackLogout_ConcurrentReplicas(t *testing.T) {
	idp := federationtest.NewIdP(t)
	s := bustest.RunServer(t)
	trust := []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}
	a, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust})
	b, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust})
	sc := runFleet(t, s, a, 1)[0]
	gone := idp.AccessToken(t, "erin", "e-1")
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, gone, http.StatusOK, "") })
	before := revocationSeq(t, a)
	tok := idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "e-1" })

	const n = 16
	codes := make(chan int, n)
	start := make(chan struct{})
	for i := range n {
		svc := a
		if i%2 == 1 {
			svc = b
		}
		go func() {
			<-start
			code, _, _ := postLogout(t, svc, tok)
			codes <- code
		}()
	}
	close(start)
	ok := 0
	for range n {
		switch c := <-codes; c {
		case http.StatusOK:
			ok++
		case http.StatusBadRequest:
		default:
			t.Errorf("logout answered %d", c)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d identical logouts answered 200, want exactly 1", ok, n)
	}
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, gone, http.StatusUnauthorized, "revoked") })
	code, raw := call(t, "GET", a.URL()+"/v1/revocations?limit=100", adminToken, nil)
	if code != http.StatusOK {
		t.Fatalf("revocations: %d %s", code, raw)
	}
	if got := strings.Count(string(raw), `"e-1"`); got != 1 {
		t.Errorf("%d revocations of session e-1, want 1 (seq before %d): %s", got, before, raw)
	}
}

// TestAttackPush_AnotherTransmittersCredential: two trusted transmitters,
// each with its own push credential: one's credential cannot push the
// other's SETs, even genuine ones (403), and nothing is revoked.
func TestAttackPush_AnotherTransmittersCredential(t *testing.T) {
	a, b := federationtest.NewIdP(t), federationtest.NewIdP(t)
	svc, _ := runTrusting(t, 1, func(is *federation.Issuer) {
		is.PushCredential = "ssf-" + map[bool]string{true: "a", false: "b"}[is.URL == a.URL]
	}, a, b)
	_ = credential(t, svc, "ssf-a", issuer.ScopeSignals)
	credB := credential(t, svc, "ssf-b", issuer.ScopeSignals)
	before := revocationSeq(t, svc)
	set := a.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": a.URL, "sub": "bob"}, nil)
	if code, body := push(t, svc, credB, "application/secevent+jwt", set); code != http.StatusForbidden || !strings.Contains(body, "access_denied") {
		t.Errorf("b's credential pushing a's SET: %d %s, want 403 access_denied", code, body)
	}
	if after := revocationSeq(t, svc); after != before {
		t.Errorf("seq %d -> %d", before, after)
	}
}

// TestAttackSET_SubjectOfAnotherProvider: a transmitter's iss_sub
// subject may name another trusted provider (a transmitter speaking for
// its authorization servers, as the documentation says): the revocation
// is limited to that provider's tokens of the subject, and touches
// neither the transmitter's own tokens of a user of the same sub nor
// Herald's; the audit names the transmitter as the signal's issuer.
func TestAttackSET_SubjectOfAnotherProvider(t *testing.T) {
	a, b := federationtest.NewIdP(t), federationtest.NewIdP(t)
	svc, scs := runTrusting(t, 1, func(is *federation.Issuer) {
		is.PushCredential = "ssf-" + map[bool]string{true: "a", false: "b"}[is.URL == a.URL]
	}, a, b)
	cred := credential(t, svc, "ssf-b", issuer.ScopeSignals)
	own := createSession(t, svc, issuer.SessionRequest{Subject: "carol"})
	ofA, ofB := a.AccessToken(t, "carol", "a-1"), b.AccessToken(t, "carol", "b-1")
	if code, body := push(t, svc, cred, "application/secevent+jwt",
		b.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": a.URL, "sub": "carol"}, nil)); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, scs[0], ofA, http.StatusUnauthorized, "revoked") })
	for name, tok := range map[string]string{"the transmitter's own token": ofB, "Herald's token": own.AccessToken} {
		if err := wantVerdict(t, scs[0], tok, http.StatusOK, ""); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	code, raw := call(t, "GET", svc.URL()+"/v1/audit?action=signal.push", adminToken, nil)
	if code != http.StatusOK || !strings.Contains(string(raw), `"actor":"signal:`+b.URL+`"`) {
		t.Errorf("audit: %d %s, want the transmitter %s as the actor", code, raw, b.URL)
	}
}
