package issuer_test

import (
	"net/http"
	"testing"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestSession_IdentityFitsAHeader: verifiers refuse a token whose
// identity claim a header would not carry unchanged (spaces at either
// end are trimmed by header parsers: " alice" would read as alice), so the
// issuer refuses such a subject or tenant when the session is created,
// with a 400 naming it, and mints a scope as its space-separated scopes
// joined by single spaces, whatever spaces the request put around them.
func TestSession_IdentityFitsAHeader(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	for _, body := range []string{`{"sub":" alice"}`, `{"sub":"alice\t"}`, `{"sub":"alice","tenant":"acme "}`} {
		if code, resp := call(t, "POST", svc.URL()+"/v1/sessions", adminToken, body); code != http.StatusBadRequest {
			t.Errorf("create session %s: %d %s, want 400", body, code, resp)
		}
	}
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "alice", Scope: " read  write "})
	if got := claimsOf(t, sess.AccessToken).Scope; got != "read write" {
		t.Errorf("scope claim %q, want %q", got, "read write")
	}
}
