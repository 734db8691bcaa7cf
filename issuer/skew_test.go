package issuer_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
)

// TestSkew_FastIssuerClockRevokesMoreNotLess runs an issuer whose clock
// is 45 s ahead of its verifier's, more than the verifiers' leeway. A
// token issued just before a subject revocation is refused once the
// verifier has applied it: the revocation's time is not pulled back to
// the verifier's clock.
func TestSkew_FastIssuerClockRevokesMoreNotLess(t *testing.T) {
	srv := bustest.RunServer(t)
	const ahead = 45 * time.Second
	svc, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{Now: func() time.Time { return time.Now().Add(ahead) }})
	sc, err := verifier.OpenSidecar(verifier.SidecarConfig{
		// The verifier's clock catches up enough for the token's iat to be within leeway.
		Verifier: verifier.Config{Issuer: svc.IssuerURL(), Audience: issuer.DefaultAudience,
			Now: func() time.Time { return time.Now().Add(20 * time.Second) }},
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet,
	}, bustest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	runUntilStopped(t, sc.Run, func() { sc.Close() })
	waitReady(t, sc)

	sess := createSession(t, svc, issuer.SessionRequest{Subject: "mallory"})
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, sess.AccessToken, 200, "") })
	res := revoke(t, svc, "subject", "mallory")
	if err := sc.WaitApplied(t.Context(), res.Seq); err != nil {
		t.Fatal(err)
	}
	if code, reason := verify(t, sc, sess.AccessToken); code != 401 {
		t.Fatalf("token issued before the revocation by an issuer %s ahead: %d %s, want 401 revoked", ahead, code, reason)
	}
}

// TestSkew_SessionOfFastReplicaIsCovered: replica a's clock is 45 s ahead
// of replica b's. A session a creates and b's subject revocation then
// covers is refused on both, though a dated it after the revocation.
func TestSkew_SessionOfFastReplicaIsCovered(t *testing.T) {
	srv := bustest.RunServer(t)
	var offset atomic.Int64
	offset.Store(int64(45 * time.Second))
	a, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	b, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{})
	sess := createSession(t, a, issuer.SessionRequest{Subject: "mallory"})
	revoke(t, b, "subject", "mallory")
	for i, on := range []*issuer.Service{a, b} {
		if r := refreshAt(t, on, sess.RefreshToken, "", "", ""); r.code != 400 || r.err != "invalid_grant" {
			t.Errorf("refresh on %s of a session created by the fast replica before the revocation: %v, want invalid_grant",
				[]string{"a", "b"}[i], r)
		}
	}
	later := createSession(t, b, issuer.SessionRequest{Subject: "mallory"})
	if r := refreshAt(t, a, later.RefreshToken, "", "", ""); r.code != http.StatusOK {
		t.Fatalf("refresh of a session created after the revocation: %v", r)
	}
}
