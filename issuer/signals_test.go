package issuer_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// postLogout posts a logout token to the issuer's back-channel endpoint.
func postLogout(t *testing.T, svc *issuer.Service, token string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.PostForm(svc.URL()+issuer.BackChannelLogoutPath, url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = fmt.Fprint(&b, jsonBody(t, resp))
	return resp.StatusCode, b.String(), resp.Header
}

func jsonBody(t *testing.T, resp *http.Response) string {
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return ""
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// runTrusting runs an issuer trusting the providers idps, and n sidecars
// ready and holding the providers' keys.
func runTrusting(t *testing.T, n int, edit func(*federation.Issuer), idps ...*federationtest.IdP) (*issuer.Service, []*sidecar.Sidecar) {
	t.Helper()
	s := bustest.RunServer(t)
	var trust []federation.Issuer
	for _, idp := range idps {
		is := federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()
		if edit != nil {
			edit(&is)
		}
		trust = append(trust, is)
	}
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust})
	scs := runFleet(t, s, svc, n)
	for _, idp := range idps {
		tok := idp.AccessToken(t, "probe", "probe")
		for _, sc := range scs {
			bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, tok, http.StatusOK, "") })
		}
	}
	return svc, scs
}

// TestBackChannelLogout_RevokesTheSessionEverywhere: a provider's access
// token is accepted by every verifier; the provider's back-channel logout
// of its session answers 200 once revoked, and then every verifier
// refuses that session's tokens, while another session of the same user
// and a Herald session with the same sid keep working: the revocation is
// limited to the provider's tokens. The logout is in the audit trail.
func TestBackChannelLogout_RevokesTheSessionEverywhere(t *testing.T) {
	idp := federationtest.NewIdP(t)
	svc, scs := runTrusting(t, 3, nil, idp)
	herald := createSession(t, svc, issuer.SessionRequest{Subject: "alice"})
	gone := idp.AccessToken(t, "alice", herald.SessionID) // the provider's sid collides with Herald's
	kept := idp.AccessToken(t, "alice", "other-session")
	for _, sc := range scs {
		if err := wantVerdict(t, sc, gone, http.StatusOK, ""); err != nil {
			t.Fatal(err)
		}
	}

	code, body, h := postLogout(t, svc, idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = herald.SessionID }))
	if code != http.StatusOK || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("logout: %d %s (Cache-Control %q), want 200 no-store", code, body, h.Get("Cache-Control"))
	}
	for _, sc := range scs {
		bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, gone, http.StatusUnauthorized, "revoked") })
		for _, tok := range []string{kept, herald.AccessToken} {
			if err := wantVerdict(t, sc, tok, http.StatusOK, ""); err != nil {
				t.Error(err)
			}
		}
	}
	code, raw := call(t, "GET", svc.URL()+"/v1/audit?action=signal.logout", adminToken, nil)
	var audit struct{ Audit []issuer.AuditRecord }
	if code != http.StatusOK || json.Unmarshal(raw, &audit) != nil || len(audit.Audit) != 1 ||
		audit.Audit[0].Issuer != idp.URL || audit.Audit[0].Kind != bus.KindSession || audit.Audit[0].Value != herald.SessionID {
		t.Errorf("audit: %d %s, want one signal.logout revoking session %s of %s", code, raw, herald.SessionID, idp.URL)
	}
}

// TestBackChannelLogout_BadTokensChangeNothing: every malformed, forged,
// misdirected, stale or replayed logout token gets 400 and publishes
// nothing.
func TestBackChannelLogout_BadTokensChangeNothing(t *testing.T) {
	idp, other, stranger := federationtest.NewIdP(t), federationtest.NewIdP(t), federationtest.NewIdP(t)
	svc, _ := runTrusting(t, 1, nil, idp, other)
	good := idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "s-1" })
	if code, body, _ := postLogout(t, svc, good); code != http.StatusOK {
		t.Fatalf("good logout: %d %s", code, body)
	}
	seqBefore := revocationSeq(t, svc)
	// other's key signing a token that claims idp's iss.
	crossed := other.Sign(t, "logout+jwt", jwt.MapClaims{"iss": idp.URL, "aud": "herald", "iat": time.Now().Unix(),
		"jti": bus.NewID(), "sid": "s-2", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})
	for name, tok := range map[string]string{
		"replayed":          good,
		"untrusted issuer":  stranger.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "s-2" }),
		"another's key":     crossed,
		"wrong audience":    idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "s-2"; c["aud"] = "someone-else" }),
		"nonce present":     idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "s-2"; c["nonce"] = "n" }),
		"stale iat":         idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "s-2"; c["iat"] = time.Now().Add(-time.Hour).Unix() }),
		"no sid nor sub":    idp.LogoutToken(t, nil),
		"no logout event":   idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "s-2"; c["events"] = map[string]any{"x": map[string]any{}} }),
		"no jti":            idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "s-2"; delete(c, "jti") }),
		"an access token":   idp.AccessToken(t, "alice", "s-2"),
		"not a JWT":         "garbage",
		"oversized":         strings.Repeat("a", bus.MaxSignalToken+1),
		"signature removed": good[:strings.LastIndexByte(good, '.')+1],
	} {
		code, body, _ := postLogout(t, svc, tok)
		if code != http.StatusBadRequest || !strings.Contains(body, "invalid_request") {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, code, body)
		}
	}
	for name, req := range map[string]func() (*http.Response, error){
		"JSON body": func() (*http.Response, error) {
			return http.Post(svc.URL()+issuer.BackChannelLogoutPath, "application/json", strings.NewReader(`{"logout_token":"x"}`))
		},
		"no token": func() (*http.Response, error) {
			return http.PostForm(svc.URL()+issuer.BackChannelLogoutPath, url.Values{})
		},
	} {
		resp, err := req()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, resp.StatusCode)
		}
	}
	if after := revocationSeq(t, svc); after != seqBefore {
		t.Errorf("refused logout tokens published revocations: seq %d -> %d", seqBefore, after)
	}
}

// revocationSeq returns the sequence of the newest revocation.
func revocationSeq(t *testing.T, svc *issuer.Service) uint64 {
	t.Helper()
	code, body := call(t, "GET", svc.URL()+"/v1/revocations?limit=1", adminToken, nil)
	var list struct{ Revocations []issuer.RevocationRecord }
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil {
		t.Fatalf("revocations: %d %s", code, body)
	}
	if len(list.Revocations) == 0 {
		return 0
	}
	return list.Revocations[0].Seq
}

const credentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"

// push posts a SET to the issuer's push endpoint with credential cred.
func push(t *testing.T, svc *issuer.Service, cred, contentType, set string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", svc.URL()+issuer.SSFPushPath, strings.NewReader(set))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, jsonBody(t, resp)
}

// credential creates a named admin credential with scopes.
func credential(t *testing.T, svc *issuer.Service, name string, scopes ...string) string {
	t.Helper()
	code, body := call(t, "POST", svc.URL()+"/v1/credentials", adminToken, issuer.CredentialRequest{Name: name, Scopes: scopes})
	var c issuer.Credential
	if code != http.StatusCreated || json.Unmarshal(body, &c) != nil || c.Token == "" {
		t.Fatalf("create credential: %d %s", code, body)
	}
	return c.Token
}

// TestSSFPush_RevokesTheSubject: a CAEP credential-change SET pushed with
// the transmitter's own credential revokes that user's tokens of that
// provider on every verifier (202), a retransmission is accepted without
// a second revocation, and the other errors are RFC 8935's.
func TestSSFPush_RevokesTheSubject(t *testing.T) {
	idp := federationtest.NewIdP(t)
	svc, scs := runTrusting(t, 2, func(is *federation.Issuer) { is.PushCredential = "idp-ssf" }, idp)
	cred := credential(t, svc, "idp-ssf", issuer.ScopeSignals)
	reader := credential(t, svc, "reader", issuer.ScopeRead)
	otherSignals := credential(t, svc, "other-ssf", issuer.ScopeSignals)
	bob, carol := idp.AccessToken(t, "bob", "b-1"), idp.AccessToken(t, "carol", "c-1")
	set := idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": "bob"}, nil)

	before := revocationSeq(t, svc)
	for name, tc := range map[string]struct {
		cred, ct, set string
		code          int
		err           string
	}{
		"no credential":         {"", "application/secevent+jwt", set, 401, "authentication_failed"},
		"wrong credential":      {"not-a-credential-at-all-but-long-enough", "application/secevent+jwt", set, 401, "authentication_failed"},
		"read-only credential":  {reader, "application/secevent+jwt", set, 403, "access_denied"},
		"another's credential":  {otherSignals, "application/secevent+jwt", set, 403, "access_denied"},
		"wrong content type":    {cred, "application/jwt", set, 400, "invalid_request"},
		"oversized":             {cred, "application/secevent+jwt", strings.Repeat("a", bus.MaxSignalToken+1), 413, "invalid_request"},
		"wrong audience":        {cred, "application/secevent+jwt", idp.SET(t, credentialChange, map[string]any{"format": "opaque", "id": "bob"}, func(c jwt.MapClaims) { c["aud"] = "x" }), 400, "invalid_audience"},
		"sub claim":             {cred, "application/secevent+jwt", idp.SET(t, credentialChange, map[string]any{"format": "opaque", "id": "bob"}, func(c jwt.MapClaims) { c["sub"] = "bob" }), 400, "invalid_request"},
		"unsupported subject":   {cred, "application/secevent+jwt", idp.SET(t, credentialChange, map[string]any{"format": "phone_number", "phone_number": "+1"}, nil), 400, "invalid_request"},
		"untrusted transmitter": {cred, "application/secevent+jwt", federationtest.NewIdP(t).SET(t, credentialChange, map[string]any{"format": "opaque", "id": "bob"}, nil), 400, "invalid_issuer"},
		"typ JWT, not secevent": {cred, "application/secevent+jwt", idp.Sign(t, "JWT", jwt.MapClaims{"iss": idp.URL}), 400, "invalid_request"},
	} {
		code, body := push(t, svc, tc.cred, tc.ct, tc.set)
		if code != tc.code || !strings.Contains(body, `"err":"`+tc.err+`"`) {
			t.Errorf("%s: %d %s, want %d %s", name, code, body, tc.code, tc.err)
		}
	}
	if after := revocationSeq(t, svc); after != before {
		t.Fatalf("refused SETs published revocations: seq %d -> %d", before, after)
	}

	if code, body := push(t, svc, cred, "application/secevent+jwt", set); code != http.StatusAccepted {
		t.Fatalf("push: %d %s, want 202", code, body)
	}
	seq := revocationSeq(t, svc)
	for _, sc := range scs {
		bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, bob, http.StatusUnauthorized, "revoked") })
		if err := wantVerdict(t, sc, carol, http.StatusOK, ""); err != nil {
			t.Error(err)
		}
	}
	if code, body := push(t, svc, cred, "application/secevent+jwt", set); code != http.StatusAccepted {
		t.Errorf("retransmission: %d %s, want 202", code, body)
	}
	if again := revocationSeq(t, svc); again != seq {
		t.Errorf("retransmission revoked again: seq %d -> %d", seq, again)
	}
	replay := idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": "carol"},
		func(c jwt.MapClaims) { c["jti"] = jtiOf(t, set) })
	if code, body := push(t, svc, cred, "application/secevent+jwt", replay); code != http.StatusBadRequest || !strings.Contains(body, "invalid_request") {
		t.Errorf("another SET with the same jti: %d %s, want 400 invalid_request", code, body)
	}
	if err := wantVerdict(t, scs[0], carol, http.StatusOK, ""); err != nil {
		t.Error(err)
	}
}

// TestSSFPush_LateSETWithinTheReplayRecordsLife: a pushed SET whose iat
// is the event's time, hours ago (a transmitter that kept it while this
// issuer was away, and retransmits it byte for byte), is acted on; one
// older than 23 hours, which a replay record might no longer catch, is
// refused and changes nothing.
func TestSSFPush_LateSETWithinTheReplayRecordsLife(t *testing.T) {
	idp := federationtest.NewIdP(t)
	svc, scs := runTrusting(t, 1, func(is *federation.Issuer) { is.PushCredential = "idp-ssf" }, idp)
	cred := credential(t, svc, "idp-ssf", issuer.ScopeSignals)
	bob := idp.AccessToken(t, "bob", "b-1")
	aged := func(sub string, age time.Duration) string {
		return idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": sub},
			func(c jwt.MapClaims) { c["iat"] = time.Now().Add(-age).Unix() })
	}

	before := revocationSeq(t, svc)
	if code, body := push(t, svc, cred, "application/secevent+jwt", aged("carol", 23*time.Hour+time.Minute)); code != http.StatusBadRequest || !strings.Contains(body, "invalid_request") {
		t.Fatalf("a SET 23 hours and a minute old: %d %s, want 400 invalid_request", code, body)
	}
	if after := revocationSeq(t, svc); after != before {
		t.Fatalf("a refused SET published a revocation: seq %d -> %d", before, after)
	}
	late := aged("bob", 22*time.Hour)
	if code, body := push(t, svc, cred, "application/secevent+jwt", late); code != http.StatusAccepted {
		t.Fatalf("a SET 22 hours old: %d %s, want 202", code, body)
	}
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, scs[0], bob, http.StatusUnauthorized, "revoked") })
	seq := revocationSeq(t, svc)
	if code, body := push(t, svc, cred, "application/secevent+jwt", late); code != http.StatusAccepted {
		t.Errorf("its retransmission: %d %s, want 202", code, body)
	}
	if again := revocationSeq(t, svc); again != seq {
		t.Errorf("the retransmission revoked again: seq %d -> %d", seq, again)
	}
}

func jtiOf(t *testing.T, token string) string {
	t.Helper()
	var c struct{ JTI string }
	decodeSegment(t, token, 1, &c)
	return c.JTI
}

// pollTransmitter is an RFC 8936 poll endpoint: it hands out the SETs
// not yet acknowledged and records acknowledgements and errors.
type pollTransmitter struct {
	*httptest.Server
	mu      sync.Mutex
	pending map[string]string // jti -> SET
	acked   map[string]int
	errs    map[string]string
}

func newPollTransmitter(t *testing.T, token string) *pollTransmitter {
	p := &pollTransmitter{pending: map[string]string{}, acked: map[string]int{}, errs: map[string]string{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req struct {
			Ack     []string
			SetErrs map[string]struct{ Err string }
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, jti := range req.Ack {
			p.acked[jti]++
			delete(p.pending, jti)
		}
		for jti, e := range req.SetErrs {
			p.errs[jti] = e.Err
			delete(p.pending, jti)
		}
		json.NewEncoder(w).Encode(map[string]any{"sets": p.pending, "moreAvailable": false})
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *pollTransmitter) add(t *testing.T, set string) string {
	jti := jtiOf(t, set)
	p.mu.Lock()
	p.pending[jti] = set
	p.mu.Unlock()
	return jti
}

func (p *pollTransmitter) state(jti string) (acked int, err string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked[jti], p.errs[jti]
}

// TestSSFPoll_AcknowledgesOnceActedOn: a polled SET revokes, then is
// acknowledged; a bad one is reported in setErrs; a SET sent again after
// it was acted on (its acknowledgement lost) is acknowledged without a
// second revocation.
func TestSSFPoll_AcknowledgesOnceActedOn(t *testing.T) {
	idp := federationtest.NewIdP(t)
	tr := newPollTransmitter(t, "poll-token")
	s := bustest.RunServer(t)
	trust := []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}
	set := idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": "dave"}, nil)
	good := tr.add(t, set)
	bad := tr.add(t, idp.SET(t, credentialChange, map[string]any{"format": "opaque", "id": "x"}, func(c jwt.MapClaims) { c["aud"] = "nobody" }))
	// dave's token is issued before the issuer polls: a subject revocation
	// ends the tokens issued up to it, not one minted a second later.
	dave := idp.AccessToken(t, "dave", "d-1")
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust,
		SSFPolls: []issuer.SSFPoll{{URL: tr.URL, Token: "poll-token"}}})
	sc := runFleet(t, s, svc, 1)[0]
	bustest.WaitFor(t, 10*time.Second, func() error {
		if n, _ := tr.state(good); n != 1 {
			return fmt.Errorf("good SET acknowledged %d times", n)
		}
		if _, e := tr.state(bad); e != "invalid_audience" {
			return fmt.Errorf("bad SET error %q, want invalid_audience", e)
		}
		return nil
	})
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, dave, http.StatusUnauthorized, "revoked") })
	seq := revocationSeq(t, svc)

	tr.add(t, set) // its acknowledgement was lost
	bustest.WaitFor(t, 10*time.Second, func() error {
		if n, _ := tr.state(good); n != 2 {
			return fmt.Errorf("resent SET acknowledged %d times in all, want 2", n)
		}
		return nil
	})
	if again := revocationSeq(t, svc); again != seq {
		t.Errorf("resent SET revoked again: seq %d -> %d", seq, again)
	}
}

// TestRevoke_ExternalKeyForGood: revoking a trusted provider's key, with
// or without naming the provider, refuses its tokens on every verifier
// and records the revocation for good in HERALD_KEYS, so that neither the
// issuer nor a verifier trusts the key again after the revocation itself
// has expired. Herald's own keys are untouched.
func TestRevoke_ExternalKeyForGood(t *testing.T) {
	for _, scoped := range []bool{true, false} {
		t.Run(fmt.Sprintf("scoped=%v", scoped), func(t *testing.T) {
			idp := federationtest.NewIdP(t)
			s := bustest.RunServer(t)
			trust := []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}
			svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust})
			sc := runFleet(t, s, svc, 1)[0]
			tok := idp.AccessToken(t, "erin", "e-1")
			bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, tok, http.StatusOK, "") })
			herald := createSession(t, svc, issuer.SessionRequest{Subject: "erin"})

			req := issuer.RevocationRequest{Kind: "key", Value: idp.Kid, Reason: "leaked"}
			if scoped {
				req.Issuer = idp.URL
			}
			if code, body := call(t, "POST", svc.URL()+"/v1/revocations", adminToken, req); code != http.StatusOK {
				t.Fatalf("revoke key: %d %s", code, body)
			}
			bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, tok, http.StatusUnauthorized, "revoked") })
			if err := wantVerdict(t, sc, herald.AccessToken, http.StatusOK, ""); err != nil {
				t.Error(err)
			}
			kv, err := bustest.Connect(t, s).Keys(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Get(t.Context(), bus.RevokedKeyPrefix+bus.RevokedExternalKid(idp.URL, idp.Kid)); err != nil {
				t.Fatalf("no permanent record of the revoked key: %v", err)
			}
		})
	}
}
