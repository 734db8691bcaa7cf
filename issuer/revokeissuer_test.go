package issuer_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestRevoke_LimitedToIssuer: a revocation may name the issuer whose
// tokens it covers. Herald's own issuer is accepted, carried in the
// event and the audit record, and enforced; an issuer that is neither
// Herald's nor trusted is refused with a clear error and publishes
// nothing.
func TestRevoke_LimitedToIssuer(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc := runFleet(t, s, svc, 1)[0]
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "alice"})
	conn := bustest.Connect(t, s)
	before := bustest.StreamInfo(t, conn, bus.StreamRevocations).State.LastSeq

	for _, iss := range []string{"https://stranger.example", "bad issuer", strings.Repeat("x", 300)} {
		code, body := call(t, "POST", svc.URL()+"/v1/revocations", adminToken,
			issuer.RevocationRequest{Kind: "session", Value: sess.SessionID, Issuer: iss})
		if code != http.StatusBadRequest || !strings.Contains(string(body), "issuer") {
			t.Errorf("iss %.20q: %d %s, want 400 naming the issuer", iss, code, body)
		}
		code, body = call(t, "POST", svc.URL()+"/v1/revocations?dry_run=true", adminToken,
			issuer.RevocationRequest{Kind: "session", Value: sess.SessionID, Issuer: iss})
		if code != http.StatusBadRequest {
			t.Errorf("dry run, iss %.20q: %d %s, want 400", iss, code, body)
		}
	}
	if after := bustest.StreamInfo(t, conn, bus.StreamRevocations).State.LastSeq; after != before {
		t.Fatalf("refused revocations published: seq %d -> %d", before, after)
	}
	if err := wantVerdict(t, sc, sess.AccessToken, http.StatusOK, ""); err != nil {
		t.Fatal(err)
	}

	code, body := call(t, "POST", svc.URL()+"/v1/revocations", adminToken,
		issuer.RevocationRequest{Kind: "session", Value: sess.SessionID, Issuer: svc.IssuerURL(), Reason: "own"})
	if code != http.StatusOK {
		t.Fatalf("revoke with own iss: %d %s", code, body)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		return wantVerdict(t, sc, sess.AccessToken, http.StatusUnauthorized, "revoked")
	})
	code, body = call(t, "GET", svc.URL()+"/v1/revocations?kind=session", adminToken, nil)
	var list struct{ Revocations []issuer.RevocationRecord }
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Revocations) != 1 || list.Revocations[0].Issuer != svc.IssuerURL() {
		t.Errorf("revocation list: %d %s, want one session revocation with iss %s", code, body, svc.IssuerURL())
	}
	code, body = call(t, "GET", svc.URL()+"/v1/audit?action=revoke", adminToken, nil)
	var audit struct{ Audit []issuer.AuditRecord }
	if code != http.StatusOK || json.Unmarshal(body, &audit) != nil || len(audit.Audit) != 1 || audit.Audit[0].Issuer != svc.IssuerURL() {
		t.Errorf("audit: %d %s, want one revoke with iss %s", code, body, svc.IssuerURL())
	}
	// Herald's own state follows a revocation limited to Herald's own
	// issuer: the session cannot be refreshed.
	if code, _ := refresh(t, svc, sess.RefreshToken); code != http.StatusBadRequest {
		t.Errorf("refresh after the revocation: %d, want 400", code)
	}
}
