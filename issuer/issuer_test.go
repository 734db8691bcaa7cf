package issuer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/internal/secretfile"
	"github.com/heraldsec/herald/issuer"
)

func TestIssuer_RevokeSessionReachesEveryVerifier(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	scs := runFleet(t, s, svc, 3)
	victim := createSession(t, svc, issuer.SessionRequest{Subject: "alice"})
	bystander := createSession(t, svc, issuer.SessionRequest{Subject: "alice"})
	for _, sc := range scs {
		bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, victim.AccessToken, 200, "") })
	}
	res := revoke(t, svc, "session", victim.SessionID)
	if res.Seq == 0 || res.ID == "" {
		t.Fatalf("revocation result %+v: want id and seq", res)
	}
	for _, sc := range scs {
		bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, victim.AccessToken, 401, "revoked") })
		if err := wantVerdict(t, sc, bystander.AccessToken, 200, ""); err != nil {
			t.Error(err)
		}
	}
}

func TestIssuer_EachKindRejectsExactlyItsTokens(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)

	type tokenOf = issuer.SessionRequest
	tests := []struct {
		kind  string
		match tokenOf
		other tokenOf
		value func(match issuer.SessionResponse) string
	}{
		{kind: "token", match: tokenOf{Subject: "u-token"}, other: tokenOf{Subject: "u-token"},
			value: func(m issuer.SessionResponse) string { return claimsOf(t, m.AccessToken).ID }},
		{kind: "session", match: tokenOf{Subject: "u-session"}, other: tokenOf{Subject: "u-session"},
			value: func(m issuer.SessionResponse) string { return m.SessionID }},
		{kind: "subject", match: tokenOf{Subject: "u-subject"}, other: tokenOf{Subject: "u-subject-2"},
			value: func(issuer.SessionResponse) string { return "u-subject" }},
		{kind: "client", match: tokenOf{Subject: "u-client", ClientID: "c-1"}, other: tokenOf{Subject: "u-client", ClientID: "c-2"},
			value: func(issuer.SessionResponse) string { return "c-1" }},
		{kind: "tenant", match: tokenOf{Subject: "u-tenant", Tenant: "t-1"}, other: tokenOf{Subject: "u-tenant", Tenant: "t-2"},
			value: func(issuer.SessionResponse) string { return "t-1" }},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			match := createSession(t, svc, tt.match)
			other := createSession(t, svc, tt.other)
			res := revoke(t, svc, tt.kind, tt.value(match))
			bustest.WaitFor(t, 5*time.Second, func() error {
				if got := sc.Status().Applied; got < res.Seq {
					return fmt.Errorf("applied %d, want %d", got, res.Seq)
				}
				return nil
			})
			if err := wantVerdict(t, sc, match.AccessToken, 401, "revoked"); err != nil {
				t.Error(err)
			}
			if err := wantVerdict(t, sc, other.AccessToken, 200, ""); err != nil {
				t.Error(err)
			}
			// Revocations by issued-at spare tokens issued afterwards; a
			// new session has a new jti and sid.
			after := createSession(t, svc, tt.match)
			if err := wantVerdict(t, sc, after.AccessToken, 200, ""); err != nil {
				t.Errorf("token issued after the revocation: %v", err)
			}
		})
	}

	t.Run("key", func(t *testing.T) {
		old := createSession(t, svc, tokenOf{Subject: "u-key"})
		oldKid := headerKid(t, old.AccessToken)
		revoke(t, svc, "key", oldKid)
		bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, old.AccessToken, 401, "revoked") })
		fresh := createSession(t, svc, tokenOf{Subject: "u-key"})
		if kid := headerKid(t, fresh.AccessToken); kid == oldKid {
			t.Fatalf("new token signed with the revoked key %s", kid)
		}
		bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, fresh.AccessToken, 200, "") })
		code, body := call(t, "GET", svc.URL()+"/.well-known/jwks.json", "", nil)
		if code != 200 || bytes.Contains(body, []byte(oldKid)) {
			t.Errorf("jwks = %d %s, want 200 without revoked kid %s", code, body, oldKid)
		}
	})

	t.Run("all", func(t *testing.T) {
		before := createSession(t, svc, tokenOf{Subject: "u-all", Tenant: "t-9"})
		revoke(t, svc, "all", "")
		bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, before.AccessToken, 401, "revoked") })
		after := createSession(t, svc, tokenOf{Subject: "u-all", Tenant: "t-9"})
		if err := wantVerdict(t, sc, after.AccessToken, 200, ""); err != nil {
			t.Errorf("token issued after revoke all: %v", err)
		}
	})
}

func TestIssuer_VerifierDownDuringRevocation(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	dir := t.TempDir()
	sc, stop := runSidecar(t, s, svc.IssuerURL(), dir)
	waitReady(t, sc)
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "bob"})
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, sess.AccessToken, 200, "") })
	stop()

	// Revoke while the verifier is down, plus more traffic after it.
	res := revoke(t, svc, "session", sess.SessionID)
	for i := range 50 {
		revoke(t, svc, "token", fmt.Sprintf("filler-%d", i))
	}

	sc, stop = runSidecar(t, s, svc.IssuerURL(), dir)
	// From the first answer on, the revoked token never verifies: the
	// sidecar answers 503 until caught up, then 401.
	bustest.WaitFor(t, 10*time.Second, func() error {
		code, reason := verify(t, sc, sess.AccessToken)
		switch {
		case code == 200:
			t.Fatalf("revoked token verified while catching up (status %+v)", sc.Status())
		case code == 503:
			return fmt.Errorf("not ready yet")
		case code != 401 || reason != "revoked":
			t.Fatalf("verify = %d %q, want 401 revoked", code, reason)
		}
		return nil
	})
	st := sc.Status()
	if !st.Ready || st.Applied < res.Seq+50 {
		t.Fatalf("status %+v: want ready with applied >= %d", st, res.Seq+50)
	}
	stop()

	// Restart again with nothing new: nothing is applied twice.
	sc, _ = runSidecar(t, s, svc.IssuerURL(), dir)
	waitReady(t, sc)
	st2 := sc.Status()
	if st2.EventsApplied != 0 || st2.Applied != st.Applied {
		t.Fatalf("after restart: events applied %d, applied seq %d; want 0 and %d", st2.EventsApplied, st2.Applied, st.Applied)
	}
	if err := wantVerdict(t, sc, sess.AccessToken, 401, "revoked"); err != nil {
		t.Fatal(err)
	}
}

func TestIssuer_RestartKeepsSigningKey(t *testing.T) {
	s := bustest.RunServer(t)
	dir := t.TempDir()
	svc, stop := runIssuer(t, s, dir)
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "carol"})
	kid := headerKid(t, sess.AccessToken)
	stop()

	for _, p := range []string{filepath.Join(dir, "keys", kid+".pem"), filepath.Join(dir, "keys")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or world access", p, fi.Mode().Perm())
		}
	}

	svc, _ = runIssuer(t, s, dir)
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	again := createSession(t, svc, issuer.SessionRequest{Subject: "carol"})
	if got := headerKid(t, again.AccessToken); got != kid {
		t.Fatalf("kid after restart = %s, want %s", got, kid)
	}
	if err := wantVerdict(t, sc, sess.AccessToken, 200, ""); err != nil {
		t.Fatalf("token issued before restart: %v", err)
	}
}

func TestIssuer_AdminTokenFileCreated(t *testing.T) {
	s := bustest.RunServer(t)
	dir := t.TempDir()
	conn := bustest.Connect(t, s)
	svc, err := issuer.Open(t.Context(), issuer.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Logger: quiet}, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	path := filepath.Join(dir, issuer.AdminTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode = %v, want 0600", path, fi.Mode().Perm())
	}
}

// TestIssuer_ShortAdminTokenRefused: an admin token shorter than 32 bytes,
// from the configuration or the token file, stops the issuer from
// starting with an error that gives the length but not the token, and no
// state is created.
func TestIssuer_ShortAdminTokenRefused(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	short := strings.Repeat("k", issuer.MinAdminTokenLen-1)

	dir := filepath.Join(t.TempDir(), "data")
	_, err := issuer.Open(t.Context(), issuer.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Logger: quiet, AdminToken: short}, conn)
	if err == nil || !strings.Contains(err.Error(), "admin token is 31 bytes, want at least 32") || strings.Contains(err.Error(), short) {
		t.Fatalf("open with a 31-byte admin token: %v, want a refusal naming the length only", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data dir after the refusal: %v, want none", err)
	}

	dir = t.TempDir()
	if err := secretfile.Write(filepath.Join(dir, issuer.AdminTokenFile), []byte(short+"\n")); err != nil {
		t.Fatal(err)
	}
	_, err = issuer.Open(t.Context(), issuer.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Logger: quiet}, conn)
	if err == nil || !strings.Contains(err.Error(), "want at least 32") || strings.Contains(err.Error(), short) {
		t.Fatalf("open with a 31-byte admin token file: %v, want a refusal naming the length only", err)
	}

	svc, err := issuer.Open(t.Context(), issuer.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet,
		AdminToken: short + "k"}, conn)
	if err != nil {
		t.Fatalf("open with a 32-byte admin token: %v", err)
	}
	svc.Close()
}

func TestIssuer_BadRequestsChangeNothing(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	conn := bustest.Connect(t, s)
	head := func() uint64 {
		_, last, err := conn.StreamHead(t.Context(), bus.StreamRevocations)
		if err != nil {
			t.Fatal(err)
		}
		return last
	}
	before := head()
	tests := []struct {
		name  string
		path  string
		token string
		body  any
		code  int
	}{
		{"unknown kind", "/v1/revocations", adminToken, `{"kind":"everything","value":"x"}`, 400},
		{"missing value", "/v1/revocations", adminToken, `{"kind":"session"}`, 400},
		{"value for all", "/v1/revocations", adminToken, `{"kind":"all","value":"x"}`, 400},
		{"not json", "/v1/revocations", adminToken, `kind=session`, 400},
		{"unknown member", "/v1/revocations", adminToken, `{"kind":"session","value":"x","extra":1}`, 400},
		{"trailing data", "/v1/revocations", adminToken, `{"kind":"session","value":"x"} {}`, 400},
		{"control characters", "/v1/revocations", adminToken, `{"kind":"session","value":"a\u0000b"}`, 400},
		{"oversized value", "/v1/revocations", adminToken, fmt.Sprintf(`{"kind":"session","value":%q}`, strings.Repeat("x", 300)), 400},
		{"oversized reason", "/v1/revocations", adminToken, fmt.Sprintf(`{"kind":"session","value":"x","reason":%q}`, strings.Repeat("x", 70<<10)), 400},
		{"oversized body", "/v1/sessions", adminToken, fmt.Sprintf(`{"sub":"a","scope":%q}`, strings.Repeat("x", 70<<10)), 413},
		{"values and value", "/v1/revocations", adminToken, `{"kind":"token","value":"a","values":["b"]}`, 400},
		{"values for all", "/v1/revocations", adminToken, `{"kind":"all","values":["b"]}`, 400},
		{"empty value in values", "/v1/revocations", adminToken, `{"kind":"token","values":["a",""]}`, 400},
		{"no admin token", "/v1/revocations", "", `{"kind":"session","value":"x"}`, 401},
		{"wrong admin token", "/v1/revocations", "nope", `{"kind":"session","value":"x"}`, 401},
		{"session without sub", "/v1/sessions", adminToken, `{"tenant":"t"}`, 400},
		{"session ttl too long", "/v1/sessions", adminToken, `{"sub":"a","ttl":"24h"}`, 400},
		{"session ttl garbage", "/v1/sessions", adminToken, `{"sub":"a","ttl":"soon"}`, 400},
		{"session ttl overflow", "/v1/sessions", adminToken, `{"sub":"a","ttl":18446744075}`, 400},
		{"session without admin", "/v1/sessions", "", `{"sub":"a"}`, 401},
		// encoding/json would keep the last duplicate and match names
		// case-insensitively; each of these would otherwise succeed.
		{"duplicate value", "/v1/revocations", adminToken, `{"kind":"session","value":"x","value":"y"}`, 400},
		{"case-variant value", "/v1/revocations", adminToken, `{"kind":"session","value":"x","Value":"y"}`, 400},
		{"escaped duplicate kind", "/v1/revocations", adminToken, `{"kind":"session","value":"x","\u006bind":"token"}`, 400},
		{"duplicate sub", "/v1/sessions", adminToken, `{"sub":"alice","sub":"root"}`, 400},
		{"case-variant sub", "/v1/sessions", adminToken, `{"SUB":"root"}`, 400},
		{"duplicate scopes", "/v1/credentials", adminToken, `{"name":"ci","scopes":["read"],"scopes":["admin"]}`, 400},
		{"case-variant client name", "/v1/clients", adminToken, `{"name":"a","NAME":"b"}`, 400},
		{"body not an object", "/v1/revocations", adminToken, `["session","x"]`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, "POST", svc.URL()+tt.path, tt.token, tt.body)
			if code != tt.code {
				t.Fatalf("status = %d (%s), want %d", code, body, tt.code)
			}
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || e.Description == "" {
				t.Fatalf("body %s: want {error, error_description}", body)
			}
		})
	}
	if got := head(); got != before {
		t.Fatalf("HERALD stream head moved from %d to %d: a bad request published something", before, got)
	}
}
