//go:build linux

package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The SSF transmitter tests (ssf_e2e_test.go) check every SET Herald
// sends with a receiver Herald did not write: testdata/ssf-receiver, a
// Node.js program on npm jose (pinned in its package.json and
// package-lock.json) that verifies each SET on the key of the
// transmitter's jwks_uri and checks the rules of SSF 1.0 and the CAEP
// interoperability profile. TestSSFReceiver_FlagsEveryBrokenRule holds
// that the receiver catches what it checks: a receiver that passed
// everything would make those tests pass whatever Herald sent.

// Event type URIs and delivery methods of SSF 1.0 and CAEP 1.0.
const (
	ssfSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	ssfVerification   = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	ssfPush           = "urn:ietf:rfc:8935"
	ssfPoll           = "urn:ietf:rfc:8936"
)

// receiverReady is the line the receiver prints once it serves.
var receiverReady = regexp.MustCompile(`ssf-receiver ready url=(\S+)`)

// ssfReceiverSource is the directory of the receiver's package and script.
const ssfReceiverSource = "testdata/ssf-receiver"

// ssfCall is an HTTP call of the transmitter's endpoints.
type ssfCall struct {
	code   int
	header http.Header
	body   []byte
}

// json decodes the answer's body into v.
func (c ssfCall) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(c.body, v); err != nil {
		t.Fatalf("answer %d %.300s: %v", c.code, c.body, err)
	}
}

// errorCode returns the error member of a JSON error answer.
func (c ssfCall) errorCode() string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(c.body, &e)
	return e.Error
}

// ssfHTTP sends method target with body (JSON unless nil) and the bearer
// token (none when empty).
func ssfHTTP(t *testing.T, method, target, token string, body any) ssfCall {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(t.Context(), method, target, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return ssfCall{code: resp.StatusCode, header: resp.Header, body: b}
}

// ssfReceiver is the running Node.js receiver.
type ssfReceiver struct {
	t    *testing.T
	proc *proc
	url  string
}

// ssfRecord is one SET the receiver got, as it reports it.
type ssfRecord struct {
	Via        string         `json:"via"`
	JTI        string         `json:"jti"`
	Token      string         `json:"token"` // the compact SET
	Header     map[string]any `json:"header"`
	Claims     map[string]any `json:"claims"`
	Type       string         `json:"type"`
	Event      map[string]any `json:"event"`
	Violations []string       `json:"violations"`
}

// ssfReceived is what the receiver got.
type ssfReceived struct {
	Sets       []ssfRecord  `json:"sets"`
	Violations []string     `json:"violations"`
	Attempts   []ssfAttempt `json:"attempts"`
}

// ssfAttempt is one push the receiver answered.
type ssfAttempt struct {
	Status int    `json:"status"`
	Token  string `json:"token"`
}

// answer makes the receiver answer its next count pushes with status,
// without checking them.
func (r *ssfReceiver) answer(status, count int) {
	r.t.Helper()
	if c := ssfHTTP(r.t, "POST", r.url+"/answer", "", map[string]int{"status": status, "count": count}); c.code != http.StatusOK {
		r.t.Fatalf("receiver /answer: %d %s", c.code, c.body)
	}
}

// attempts returns the status of each push of SET token, in order.
func (got ssfReceived) attempts(token string) []int {
	var out []int
	for _, a := range got.Attempts {
		if a.Token == token {
			out = append(out, a.Status)
		}
	}
	return out
}

// startSSFReceiver installs and starts the receiver for transmitter
// issuer: every SET must be for audience, and every push must carry
// pushAuthorization.
func startSSFReceiver(t *testing.T, issuer, audience, pushAuthorization string) *ssfReceiver {
	t.Helper()
	dir := installNodePackage(t, ssfReceiverSource, "the SSF transmitter tests")
	cfg, err := json.Marshal(map[string]any{"port": 0, "issuer": issuer, "audience": audience, "push_authorization": pushAuthorization})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &ssfReceiver{t: t}
	r.proc = startProc(t, "ssf-receiver", nil, "node", filepath.Join(dir, "receiver.mjs"), cfgFile)
	r.url = r.proc.waitLog(receiverReady, 30*time.Second)[1]
	return r
}

// received returns what the receiver got; with query (txn=X or state=S)
// the receiver first waits until that SET has arrived.
func (r *ssfReceiver) received(query url.Values) ssfReceived {
	r.t.Helper()
	var got ssfReceived
	c := ssfHTTP(r.t, "GET", r.url+"/received?"+query.Encode(), "", nil)
	if c.code != http.StatusOK {
		r.t.Fatalf("receiver /received: %d %s", c.code, c.body)
	}
	c.json(r.t, &got)
	return got
}

// waitSET waits until the receiver got the SET with txn (a Herald
// revocation's event id) and returns it.
func (r *ssfReceiver) waitSET(txn string) ssfRecord {
	r.t.Helper()
	got := r.received(url.Values{"txn": {txn}})
	for _, s := range got.Sets {
		if s.Claims["txn"] == txn {
			return s
		}
	}
	r.t.Fatalf("no SET with txn %s arrived; the receiver got %d SETs, violations %q", txn, len(got.Sets), got.Violations)
	return ssfRecord{}
}

// verify asks the transmitter, through the receiver, for a verification
// event with state on stream id; it returns the transmitter's status.
func (r *ssfReceiver) verify(endpoint, token, id, state string) int {
	r.t.Helper()
	var ans struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	ssfHTTP(r.t, "POST", r.url+"/verify", "", map[string]any{"endpoint": endpoint, "token": token, "stream_id": id, "state": state}).json(r.t, &ans)
	if ans.Status/100 != 2 {
		r.t.Logf("verification request: %d %s", ans.Status, ans.Body)
	}
	return ans.Status
}

// waitVerification waits until the verification event with state has
// arrived, by push, and returns it.
func (r *ssfReceiver) waitVerification(state string) ssfRecord {
	r.t.Helper()
	got := r.received(url.Values{"state": {state}})
	for _, s := range got.Sets {
		if s.Type == ssfVerification && s.Event["state"] == state {
			return s
		}
	}
	r.t.Fatalf("no verification event with state %q arrived; violations %q", state, got.Violations)
	return ssfRecord{}
}

// ssfPollAnswer is the receiver's account of one poll request.
type ssfPollAnswer struct {
	Status        int                  `json:"status"`
	Error         string               `json:"error"`
	Sets          map[string]ssfRecord `json:"sets"`
	MoreAvailable bool                 `json:"moreAvailable"`
}

// poll makes one RFC 8936 poll request of endpoint through the receiver,
// which checks every SET returned.
func (r *ssfReceiver) poll(endpoint, token string, req map[string]any) ssfPollAnswer {
	r.t.Helper()
	body := map[string]any{"endpoint": endpoint, "token": token}
	for k, v := range req {
		body[k] = v
	}
	var ans ssfPollAnswer
	ssfHTTP(r.t, "POST", r.url+"/poll", "", body).json(r.t, &ans)
	if ans.Status != http.StatusOK {
		r.t.Fatalf("poll %v: %d %s", req, ans.Status, ans.Error)
	}
	return ans
}

// checkNoViolations fails the test for every rule a SET the receiver got
// broke, and returns what it got.
func (r *ssfReceiver) checkNoViolations() ssfReceived {
	r.t.Helper()
	got := r.received(nil)
	for _, v := range got.Violations {
		r.t.Errorf("receiver: %s", v)
	}
	return got
}

// mustJSON returns v as JSON (maps with sorted keys).
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fakeTransmitter is the metadata, key set, verification and poll
// endpoints of a transmitter, for the receiver's own test: the SETs it
// serves are made by the test.
type fakeTransmitter struct {
	*httptest.Server
	keys []map[string]any // the public JWKs of jwks_uri
	mu   sync.Mutex
	poll map[string]string // the sets of the next poll answer
}

func newFakeTransmitter(t *testing.T, keys map[string]*rsa.PrivateKey) *fakeTransmitter {
	f := &fakeTransmitter{}
	b64 := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }
	for kid, k := range keys {
		f.keys = append(f.keys, map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": b64(k.N), "e": b64(big.NewInt(int64(k.E)))})
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/ssf-configuration":
			json.NewEncoder(w).Encode(map[string]any{"spec_version": "1_0", "issuer": f.URL, "jwks_uri": f.URL + "/jwks",
				"verification_endpoint": f.URL + "/verify"})
		case "/jwks":
			json.NewEncoder(w).Encode(map[string]any{"keys": f.keys})
		case "/verify":
			w.WriteHeader(http.StatusNoContent)
		case "/poll":
			f.mu.Lock()
			defer f.mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"sets": f.poll})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// TestSSFReceiver_FlagsEveryBrokenRule: the receiver accepts a SET that
// follows SSF 1.0 and the CAEP interoperability profile, pushed or polled,
// and flags each SET that breaks one of the rules it checks (refusing a
// pushed one with 400), and each push without the stream's authorization
// or content type.
func TestSSFReceiver_FlagsEveryBrokenRule(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tr := newFakeTransmitter(t, map[string]*rsa.PrivateKey{"k1": key})
	const aud, auth = "rp-client", "Bearer push-secret-of-the-stream"
	r := startSSFReceiver(t, tr.URL, aud, auth)

	n := 0
	set := func(edit func(h map[string]any, c jwt.MapClaims)) (string, string) {
		n++
		jti := "jti-" + strings.Repeat("x", n)
		h := map[string]any{"typ": "secevent+jwt", "kid": "k1"}
		c := jwt.MapClaims{"iss": tr.URL, "aud": aud, "iat": time.Now().Unix(), "jti": jti, "txn": "txn-1",
			"sub_id": map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": "sid-1"}},
			"events": map[string]any{ssfSessionRevoked: map[string]any{"event_timestamp": time.Now().Unix(),
				"initiating_entity": "admin", "reason_admin": map[string]any{"en": "stolen laptop"}}}}
		signer := key
		if edit != nil {
			edit(h, c)
		}
		if h["kid"] == "other" {
			signer = other
			h["kid"] = "k1"
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		for k, v := range h {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(signer)
		if err != nil {
			t.Fatal(err)
		}
		return s, jti
	}
	event := func(c jwt.MapClaims) map[string]any {
		return c["events"].(map[string]any)[ssfSessionRevoked].(map[string]any)
	}
	push := func(token, authorization, contentType string) int {
		req, err := http.NewRequestWithContext(t.Context(), "POST", r.url+"/push", strings.NewReader(token))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", authorization)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	record := func(jti string) ssfRecord {
		for _, s := range r.received(nil).Sets {
			if s.JTI == jti {
				return s
			}
		}
		t.Fatalf("the receiver has no record of SET %s", jti)
		return ssfRecord{}
	}

	good, goodJTI := set(nil)
	if code := push(good, auth, "application/secevent+jwt"); code != http.StatusAccepted {
		t.Fatalf("a good SET: %d, want 202", code)
	}
	if got := record(goodJTI); len(got.Violations) != 0 || got.Via != "push" || got.Type != ssfSessionRevoked {
		t.Fatalf("a good SET: %+v, want no violation", got)
	}
	state := "state-" + randomSecret(t)
	if code := r.verify(tr.URL+"/verify", "token", "stream-1", state); code != http.StatusNoContent {
		t.Fatalf("verification request: %d", code)
	}
	verification, _ := set(func(_ map[string]any, c jwt.MapClaims) {
		c["sub_id"] = map[string]any{"format": "opaque", "id": "stream-1"}
		c["events"] = map[string]any{ssfVerification: map[string]any{"state": state}}
	})
	if code := push(verification, auth, "application/secevent+jwt"); code != http.StatusAccepted {
		t.Fatalf("the verification asked for: %d, want 202", code)
	}
	if got := r.waitVerification(state); len(got.Violations) != 0 {
		t.Fatalf("the verification asked for: %q", got.Violations)
	}

	for name, tc := range map[string]struct {
		edit func(h map[string]any, c jwt.MapClaims)
		want string
	}{
		"typ JWT":          {func(h map[string]any, _ jwt.MapClaims) { h["typ"] = "JWT" }, "typ"},
		"another key":      {func(h map[string]any, _ jwt.MapClaims) { h["kid"] = "other" }, "jose refuses"},
		"unknown kid":      {func(h map[string]any, _ jwt.MapClaims) { h["kid"] = "k2" }, "jose refuses"},
		"another audience": {func(_ map[string]any, c jwt.MapClaims) { c["aud"] = "someone-else" }, "aud"},
		"another issuer":   {func(_ map[string]any, c jwt.MapClaims) { c["iss"] = "https://evil.example" }, "iss"},
		"no txn":           {func(_ map[string]any, c jwt.MapClaims) { delete(c, "txn") }, "txn is missing"},
		"no iat":           {func(_ map[string]any, c jwt.MapClaims) { delete(c, "iat") }, "iat is missing"},
		"a sub claim":      {func(_ map[string]any, c jwt.MapClaims) { c["sub"] = "alice" }, "a sub claim"},
		"an exp claim":     {func(_ map[string]any, c jwt.MapClaims) { c["exp"] = time.Now().Add(time.Hour).Unix() }, "an exp claim"},
		"no sub_id":        {func(_ map[string]any, c jwt.MapClaims) { delete(c, "sub_id") }, "sub_id is missing"},
		"opaque session": {func(_ map[string]any, c jwt.MapClaims) {
			c["sub_id"] = map[string]any{"format": "opaque", "id": "sid-1"}
		}, "opaque sub_id on a"},
		"phone number subject": {func(_ map[string]any, c jwt.MapClaims) {
			c["sub_id"] = map[string]any{"format": "phone_number", "phone_number": "+1"}
		}, "sub_id format"},
		"iss_sub without sub": {func(_ map[string]any, c jwt.MapClaims) {
			c["sub_id"] = map[string]any{"format": "iss_sub", "iss": tr.URL}
		}, "lacks sub"},
		"two events": {func(_ map[string]any, c jwt.MapClaims) {
			c["events"].(map[string]any)[ssfVerification] = map[string]any{}
		}, "want exactly one"},
		"empty reason_admin":   {func(_ map[string]any, c jwt.MapClaims) { event(c)["reason_admin"] = map[string]any{"en": ""} }, "reason_admin"},
		"no reason_admin":      {func(_ map[string]any, c jwt.MapClaims) { delete(event(c), "reason_admin") }, "reason_admin"},
		"no event_timestamp":   {func(_ map[string]any, c jwt.MapClaims) { delete(event(c), "event_timestamp") }, "event_timestamp"},
		"an unknown initiator": {func(_ map[string]any, c jwt.MapClaims) { event(c)["initiating_entity"] = "robot" }, "initiating_entity"},
		"a state never asked for": {func(_ map[string]any, c jwt.MapClaims) {
			c["sub_id"] = map[string]any{"format": "opaque", "id": "stream-1"}
			c["events"] = map[string]any{ssfVerification: map[string]any{"state": "not-asked"}}
		}, "never asked for"},
	} {
		token, jti := set(tc.edit)
		if code := push(token, auth, "application/secevent+jwt"); code != http.StatusBadRequest {
			t.Errorf("%s: pushed, answered %d, want 400", name, code)
		}
		if got := record(jti); !strings.Contains(strings.Join(got.Violations, "; "), tc.want) {
			t.Errorf("%s: violations %q, want one about %q", name, got.Violations, tc.want)
		}
	}

	// A weak key: jose or the receiver's own check refuses it.
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakTr := newFakeTransmitter(t, map[string]*rsa.PrivateKey{"k1": weak})
	weakR := startSSFReceiver(t, weakTr.URL, aud, auth)
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": weakTr.URL, "aud": aud, "iat": time.Now().Unix(), "jti": "weak", "txn": "t",
		"sub_id": map[string]any{"format": "iss_sub", "iss": weakTr.URL, "sub": "bob"},
		"events": map[string]any{ssfSessionRevoked: map[string]any{"event_timestamp": time.Now().Unix(), "reason_admin": map[string]any{"en": "x"}}}})
	tok.Header["typ"], tok.Header["kid"] = "secevent+jwt", "k1"
	weakSET, err := tok.SignedString(weak)
	if err != nil {
		t.Fatal(err)
	}
	r2 := &ssfReceiver{t: t, proc: weakR.proc, url: weakR.url}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", r2.url+"/push", strings.NewReader(weakSET))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Authorization", auth)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a SET signed with a 1024-bit key: %v %v, want 400", resp, err)
	} else {
		resp.Body.Close()
	}
	if got := r2.received(nil); len(got.Violations) == 0 || !strings.Contains(strings.Join(got.Violations, "; "), "2048") {
		t.Errorf("a SET signed with a 1024-bit key: violations %q, want one about 2048 bits", got.Violations)
	}

	// A receiver that is down: the push is answered as the test asked,
	// and recorded.
	r.answer(http.StatusServiceUnavailable, 1)
	if code := push(good, auth, "application/secevent+jwt"); code != http.StatusServiceUnavailable {
		t.Errorf("a push while asked to answer 503: %d", code)
	}
	if got := r.received(nil).attempts(good); !slices.Equal(got, []int{202, 503}) {
		t.Errorf("the good SET's pushes were answered %v, want [202 503]", got)
	}

	// Pushes without the stream's authorization or content type.
	before := len(r.received(nil).Violations)
	if code := push(good, "Bearer wrong", "application/secevent+jwt"); code != http.StatusUnauthorized {
		t.Errorf("a push with the wrong authorization: %d, want 401", code)
	}
	if code := push(good, auth, "application/jwt"); code != http.StatusBadRequest {
		t.Errorf("a push with another content type: %d, want 400", code)
	}
	if got := r.received(nil).Violations; len(got) != before+2 {
		t.Errorf("violations after the bad pushes: %q, want two more", got[before:])
	}

	// Poll: the SETs are checked as pushed ones, and keyed by their jti.
	polled, polledJTI := set(nil)
	misKeyed, _ := set(nil)
	tr.mu.Lock()
	tr.poll = map[string]string{polledJTI: polled, "not-its-jti": misKeyed}
	tr.mu.Unlock()
	ans := r.poll(tr.URL+"/poll", "token", map[string]any{"returnImmediately": true})
	if got := ans.Sets[polledJTI]; got.Via != "poll" || len(got.Violations) != 0 {
		t.Errorf("a good polled SET: %+v", got)
	}
	if got := ans.Sets["not-its-jti"]; !strings.Contains(strings.Join(got.Violations, "; "), "keys it as") {
		t.Errorf("a polled SET under another jti: violations %q", got.Violations)
	}
}
