package issuer_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestSessionEnd_ByUsedRefreshToken ends a session at SessionEndPath with a
// refresh token it used up, as a verifier does at logout with a cookie
// whose token was rotated since: the session ends on every verifier and
// its current refresh token stops working. A token of another session, or
// none of this one's, ends nothing, nor does a used one when only the
// current one may (if_current, for idle timeouts); ending twice is
// harmless.
func TestSessionEnd_ByUsedRefreshToken(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	scs := runFleet(t, s, svc, 1)
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "erin"})
	other := createSession(t, svc, issuer.SessionRequest{Subject: "erin"})
	code, body := refresh(t, svc, sess.RefreshToken)
	if code != 200 {
		t.Fatalf("refresh: %d %v", code, body)
	}
	current, access := body["refresh_token"].(string), body["access_token"].(string)

	endIf := func(sid, rt, ifCurrent string) (int, map[string]any) {
		code, body, _ := form(t, svc.URL()+issuer.SessionEndPath, url.Values{"session_id": {sid}, "refresh_token": {rt}, "reason": {"logout"}, "if_current": {ifCurrent}}, "", "")
		return code, body
	}
	end := func(sid, rt string) (int, map[string]any) { return endIf(sid, rt, "") }
	for name, tt := range map[string][2]string{
		"another session's token": {sess.SessionID, other.RefreshToken},
		"a token of no session":   {sess.SessionID, "hrt_forged." + sess.SessionID},
		"another session's id":    {other.SessionID, sess.RefreshToken},
		"no token":                {sess.SessionID, ""},
		"no session id":           {"", sess.RefreshToken},
	} {
		if code, body := end(tt[0], tt[1]); code != 400 {
			t.Errorf("%s: %d %v, want 400", name, code, body)
		}
	}
	if err := wantVerdict(t, scs[0], access, 200, ""); err != nil {
		t.Fatalf("after the refused attempts: %v", err)
	}

	if code, body := endIf(sess.SessionID, sess.RefreshToken, "true"); code != 409 || body["error"] != "session_in_use" {
		t.Fatalf("end if current with a used token: %d %v, want 409 session_in_use", code, body)
	}
	if code, body := endIf(sess.SessionID, current, "maybe"); code != 400 {
		t.Fatalf("if_current=maybe: %d %v, want 400", code, body)
	}
	if err := wantVerdict(t, scs[0], access, 200, ""); err != nil {
		t.Fatalf("after the refused conditional end: %v", err)
	}
	if code, body := end(sess.SessionID, sess.RefreshToken); code != 200 || body["session_id"] != sess.SessionID || body["seq"] == nil {
		t.Fatalf("end with the used token: %d %v, want 200 with the revocation's seq", code, body)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, scs[0], access, 401, "revoked") })
	if code, body := refresh(t, svc, current); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("the current refresh token after the end: %d %v, want invalid_grant", code, body)
	}
	if code, body := end(sess.SessionID, current); code != 200 || body["seq"] != nil {
		t.Fatalf("ending again: %d %v, want 200 without a new revocation", code, body)
	}
	if code, _ := refresh(t, svc, other.RefreshToken); code != 200 {
		t.Fatalf("the other session: %d, want it live", code)
	}
}
