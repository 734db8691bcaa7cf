package ssf

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/heraldsec/herald/bus"
)

// fakeAuth accepts the bearer tokens of tokens (token -> scopes) as
// receiver "rcv".
func fakeAuth(tokens map[string][]string) Authenticator {
	return func(r *http.Request) (string, []string, error) {
		tok, err := BearerToken(r)
		if err != nil {
			return "", nil, err
		}
		if tok == "broken" {
			return "", nil, errors.New("introspection store down: secret=" + tok)
		}
		scopes, ok := tokens[tok]
		if !ok {
			return "", nil, &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "token not valid"}
		}
		return "rcv", scopes, nil
	}
}

// newTestHandler returns a handler whose transmitter is never reached by
// the requests these tests make (they fail before), and its log.
func newTestHandler(t *testing.T, base string) (http.Handler, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	tr := &Transmitter{cfg: Config{Log: slog.New(slog.NewTextHandler(&logs, nil))}}
	return NewHandler(tr, fakeAuth(map[string][]string{
		"manage": {ScopeManage},
		"read":   {"openid", ScopeRead},
		"none":   {"other"},
	}), base), &logs
}

type call struct {
	method, path, token, ctype, body string
}

func (c call) do(t *testing.T, h http.Handler) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	r := httptest.NewRequest(c.method, "http://herald.test"+c.path, body)
	if c.token != "" {
		r.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.ctype != "" {
		r.Header.Set("Content-Type", c.ctype)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// wantError checks w is a JSON error with status and code, and no-store.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d (body %s)", w.Code, status, w.Body)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	if e["error"] != code || e["error_description"] == "" || len(e) != 2 {
		t.Errorf("error body %v, want error %q and a description", e, code)
	}
}

const jsonType = "application/json"

func TestHandler_Authentication(t *testing.T) {
	h, _ := newTestHandler(t, "")
	t.Run("no token is 401 with a challenge", func(t *testing.T) {
		w := call{method: "GET", path: StreamPath}.do(t, h)
		wantError(t, w, http.StatusUnauthorized, "unauthorized")
		if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="herald-ssf"` {
			t.Errorf("WWW-Authenticate %q", got)
		}
	})
	t.Run("bad token is 401 invalid_token", func(t *testing.T) {
		w := call{method: "POST", path: VerifyPath, token: "nope", ctype: jsonType, body: `{"stream_id":"a"}`}.do(t, h)
		wantError(t, w, http.StatusUnauthorized, "invalid_token")
		if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="herald-ssf", error="invalid_token"` {
			t.Errorf("WWW-Authenticate %q", got)
		}
	})
	t.Run("token in the query is refused even with a header", func(t *testing.T) {
		for _, c := range []call{
			{method: "GET", path: StreamPath + "?access_token=manage"},
			{method: "GET", path: StatusPath + "?stream_id=a&access_token=manage", token: "manage"},
			{method: "POST", path: PollPath + "s1?access_token=manage", ctype: jsonType, body: `{}`},
		} {
			wantError(t, c.do(t, h), http.StatusBadRequest, "invalid_request")
		}
	})
	t.Run("token in a form is refused", func(t *testing.T) {
		w := call{method: "POST", path: VerifyPath, ctype: "application/x-www-form-urlencoded", body: "access_token=manage&stream_id=a"}.do(t, h)
		wantError(t, w, http.StatusBadRequest, "invalid_request")
	})
	t.Run("authenticator failure is 503 and logged without the token", func(t *testing.T) {
		h, logs := newTestHandler(t, "")
		w := call{method: "GET", path: StreamPath, token: "broken"}.do(t, h)
		wantError(t, w, http.StatusServiceUnavailable, "temporarily_unavailable")
		if w.Header().Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if !strings.Contains(logs.String(), "ssf request failed") {
			t.Errorf("not logged: %q", logs)
		}
		if strings.Contains(w.Body.String(), "secret") {
			t.Errorf("the answer shows the internal error: %s", w.Body)
		}
	})
	t.Run("malformed Authorization", func(t *testing.T) {
		r := httptest.NewRequest("GET", StreamPath, nil)
		r.Header.Add("Authorization", "Bearer manage")
		r.Header.Add("Authorization", "Bearer read")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		wantError(t, w, http.StatusBadRequest, "invalid_request")
		r = httptest.NewRequest("GET", StreamPath, nil)
		r.Header.Set("Authorization", "Basic bWFuYWdlOg==")
		w = httptest.NewRecorder()
		h.ServeHTTP(w, r)
		wantError(t, w, http.StatusUnauthorized, "unauthorized")
	})
}

func TestHandler_Scopes(t *testing.T) {
	h, _ := newTestHandler(t, "")
	writes := []call{
		{method: "POST", path: StreamPath, ctype: jsonType, body: `{}`},
		{method: "PATCH", path: StreamPath, ctype: jsonType, body: `{"stream_id":"a"}`},
		{method: "PUT", path: StreamPath, ctype: jsonType, body: `{"stream_id":"a"}`},
		{method: "DELETE", path: StreamPath + "?stream_id=a"},
		{method: "POST", path: StatusPath, ctype: jsonType, body: `{"stream_id":"a","status":"paused"}`},
		{method: "POST", path: AddSubjectPath, ctype: jsonType, body: `{}`},
		{method: "POST", path: RemoveSubjectPath, ctype: jsonType, body: `{}`},
		{method: "POST", path: VerifyPath, ctype: jsonType, body: `{}`},
		{method: "POST", path: PollPath + "a", ctype: jsonType, body: `{}`},
	}
	for _, c := range writes {
		c.token = "read"
		w := c.do(t, h)
		wantError(t, w, http.StatusForbidden, "insufficient_scope")
		if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="herald-ssf", error="insufficient_scope", scope="ssf.manage"` {
			t.Errorf("%s %s: WWW-Authenticate %q", c.method, c.path, got)
		}
	}
	for _, path := range []string{StreamPath, StatusPath + "?stream_id=a"} {
		w := call{method: "GET", path: path, token: "none"}.do(t, h)
		wantError(t, w, http.StatusForbidden, "insufficient_scope")
		if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `scope="ssf.read"`) {
			t.Errorf("GET %s: WWW-Authenticate %q", path, got)
		}
	}
	// Past the scope check, a read token reads: a status without a
	// stream_id is refused for what it lacks, not for the scope.
	for _, tok := range []string{"read", "manage"} {
		wantError(t, call{method: "GET", path: StatusPath, token: tok}.do(t, h), http.StatusBadRequest, "invalid_request")
	}
}

func TestHandler_Routing(t *testing.T) {
	h, _ := newTestHandler(t, "")
	wantError(t, call{method: "GET", path: "/ssf/streams", token: "manage"}.do(t, h), http.StatusNotFound, "not_found")
	wantError(t, call{method: "POST", path: PollPath, token: "manage", ctype: jsonType, body: "{}"}.do(t, h), http.StatusNotFound, "not_found")
	wantError(t, call{method: "POST", path: PollPath + "a/b", token: "manage", ctype: jsonType, body: "{}"}.do(t, h), http.StatusNotFound, "not_found")
	w := call{method: "GET", path: VerifyPath, token: "manage"}.do(t, h)
	wantError(t, w, http.StatusMethodNotAllowed, "invalid_request")
	if got := w.Header().Get("Allow"); got != "POST" {
		t.Errorf("Allow %q, want POST", got)
	}
	w = call{method: "HEAD", path: StreamPath}.do(t, h)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, POST, PATCH, PUT, DELETE" {
		t.Errorf("HEAD: %d Allow %q", w.Code, w.Header().Get("Allow"))
	}

	t.Run("under the issuer URL's path", func(t *testing.T) {
		h, _ := newTestHandler(t, "https://idp.example.com/herald/")
		wantError(t, call{method: "GET", path: "/herald" + StatusPath, token: "read"}.do(t, h), http.StatusBadRequest, "invalid_request")
		wantError(t, call{method: "GET", path: StatusPath, token: "read"}.do(t, h), http.StatusNotFound, "not_found")
	})
}

func TestHandler_Bodies(t *testing.T) {
	h, _ := newTestHandler(t, "")
	tok := "manage"
	for name, c := range map[string]struct {
		call
		status int
	}{
		"no content type":            {call{method: "POST", path: VerifyPath, body: `{"stream_id":"a"}`}, http.StatusUnsupportedMediaType},
		"text content type":          {call{method: "POST", path: StatusPath, ctype: "text/plain", body: `{"stream_id":"a","status":"paused"}`}, http.StatusUnsupportedMediaType},
		"too large":                  {call{method: "POST", path: VerifyPath, ctype: jsonType, body: `{"stream_id":"a","state":"` + strings.Repeat("x", MaxBodyBytes) + `"}`}, http.StatusRequestEntityTooLarge},
		"too large poll":             {call{method: "POST", path: PollPath + "a", ctype: jsonType, body: `{"ack":["` + strings.Repeat("x", MaxBodyBytes) + `"]}`}, http.StatusRequestEntityTooLarge},
		"unknown status member":      {call{method: "POST", path: StatusPath, ctype: jsonType, body: `{"stream_id":"a","status":"paused","extra":1}`}, http.StatusBadRequest},
		"case variant status member": {call{method: "POST", path: StatusPath, ctype: jsonType, body: `{"stream_id":"a","Status":"paused"}`}, http.StatusBadRequest},
		"duplicate status member":    {call{method: "POST", path: StatusPath, ctype: jsonType, body: `{"stream_id":"a","status":"paused","status":"enabled"}`}, http.StatusBadRequest},
		"unknown status":             {call{method: "POST", path: StatusPath, ctype: jsonType, body: `{"stream_id":"a","status":"stopped"}`}, http.StatusBadRequest},
		"status without stream":      {call{method: "POST", path: StatusPath, ctype: jsonType, body: `{"status":"paused"}`}, http.StatusBadRequest},
		"long reason":                {call{method: "POST", path: StatusPath, ctype: jsonType, body: `{"stream_id":"a","status":"paused","reason":"` + strings.Repeat("r", MaxDescription+1) + `"}`}, http.StatusBadRequest},
		"trailing data":              {call{method: "POST", path: StatusPath, ctype: jsonType, body: `{"stream_id":"a","status":"paused"} {}`}, http.StatusBadRequest},
		"unknown verify member":      {call{method: "POST", path: VerifyPath, ctype: jsonType, body: `{"stream_id":"a","state":"s","nonce":"n"}`}, http.StatusBadRequest},
		"long state":                 {call{method: "POST", path: VerifyPath, ctype: jsonType, body: `{"stream_id":"a","state":"` + strings.Repeat("s", maxState+1) + `"}`}, http.StatusBadRequest},
		"verify without stream":      {call{method: "POST", path: VerifyPath, ctype: jsonType, body: `{"state":"s"}`}, http.StatusBadRequest},
		"unknown subject member":     {call{method: "POST", path: AddSubjectPath, ctype: jsonType, body: `{"stream_id":"a","subject":{"format":"opaque","id":"x"},"note":1}`}, http.StatusBadRequest},
		"remove with verified":       {call{method: "POST", path: RemoveSubjectPath, ctype: jsonType, body: `{"stream_id":"a","subject":{"format":"opaque","id":"x"},"verified":true}`}, http.StatusBadRequest},
		"add without subject":        {call{method: "POST", path: AddSubjectPath, ctype: jsonType, body: `{"stream_id":"a"}`}, http.StatusBadRequest},
		"remove null subject":        {call{method: "POST", path: RemoveSubjectPath, ctype: jsonType, body: `{"stream_id":"a","subject":null}`}, http.StatusBadRequest},
		"subject not an object":      {call{method: "POST", path: AddSubjectPath, ctype: jsonType, body: `[1]`}, http.StatusBadRequest},
		"delete without stream":      {call{method: "DELETE", path: StreamPath}, http.StatusBadRequest},
		"repeated stream_id":         {call{method: "GET", path: StreamPath + "?stream_id=a&stream_id=b"}, http.StatusBadRequest},
		"empty stream_id":            {call{method: "GET", path: StatusPath + "?stream_id="}, http.StatusBadRequest},
		"over-long stream_id":        {call{method: "GET", path: StreamPath + "?stream_id=" + strings.Repeat("a", maxStreamIDLen+1)}, http.StatusNotFound},
		"poll negative maxEvents":    {call{method: "POST", path: PollPath + "a", ctype: jsonType, body: `{"maxEvents":-1}`}, http.StatusBadRequest},
		"poll not JSON":              {call{method: "POST", path: PollPath + "a", ctype: jsonType, body: `maxEvents=1`}, http.StatusBadRequest},
		"poll empty":                 {call{method: "POST", path: PollPath + "a", ctype: jsonType}, http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			c.token = tok
			w := c.do(t, h)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			code := "invalid_request"
			if c.status == http.StatusNotFound {
				code = "not_found"
			}
			wantError(t, w, c.status, code)
		})
	}
}

func TestParsePollRequest(t *testing.T) {
	req, err := ParsePollRequest([]byte(`{"maxEvents":100000,"returnImmediately":true,"ack":["j1"],"setErrs":{"j2":{"err":"invalid_key","description":"d"}},"ext":1}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &PollRequest{MaxEvents: ptr(MaxPollEvents), ReturnImmediately: true, Ack: []string{"j1"},
		SetErrs: map[string]SetErr{"j2": {Err: "invalid_key", Description: "d"}}}
	if !reflect.DeepEqual(req, want) {
		t.Errorf("got %+v, want %+v", req, want)
	}
	if req, err := ParsePollRequest([]byte(`{"maxEvents":0}`)); err != nil || req.MaxEvents == nil || *req.MaxEvents != 0 {
		t.Errorf("maxEvents 0: %+v %v", req, err)
	}
	for _, bad := range []string{
		`{"maxEvents":1,"maxEvents":2}`,
		`{"MaxEvents":1}`,
		`{"ack":[""]}`,
		`{"ack":["` + strings.Repeat("j", maxJTILen+1) + `"]}`,
		`{"setErrs":{"":{"err":"x"}}}`,
		`{"ack":"j1"}`,
		`null`,
	} {
		if _, err := ParsePollRequest([]byte(bad)); err == nil {
			t.Errorf("%.60s: accepted", bad)
		} else if e := (*Error)(nil); !errors.As(err, &e) || e.Status != http.StatusBadRequest {
			t.Errorf("%.60s: %v, want a 400 *Error", bad, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestMetadata(t *testing.T) {
	got, err := json.Marshal(Metadata("https://herald.example.com", ""))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"spec_version":"1_0","issuer":"https://herald.example.com",` +
		`"jwks_uri":"https://herald.example.com/ssf/jwks.json",` +
		`"delivery_methods_supported":["urn:ietf:rfc:8935","urn:ietf:rfc:8936"],` +
		`"configuration_endpoint":"https://herald.example.com/ssf/stream",` +
		`"status_endpoint":"https://herald.example.com/ssf/status",` +
		`"add_subject_endpoint":"https://herald.example.com/ssf/subjects:add",` +
		`"remove_subject_endpoint":"https://herald.example.com/ssf/subjects:remove",` +
		`"verification_endpoint":"https://herald.example.com/ssf/verify",` +
		`"authorization_schemes":[{"spec_urn":"urn:ietf:rfc:6749"}],"default_subjects":"ALL"}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if m := Metadata("https://h.example/", SubjectsNone); m.DefaultSubjects != "NONE" || m.Issuer != "https://h.example/" || m.StatusEndpoint != "https://h.example/ssf/status" {
		t.Errorf("NONE, trailing slash: %+v", m)
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]int{
		"":                0,
		"Bearer abc":      200,
		"bearer abc":      200,
		"Bearer  abc":     200,
		"Bearer":          http.StatusUnauthorized,
		"Basic abc":       http.StatusUnauthorized,
		"Bearer ":         http.StatusBadRequest,
		"Bearer abc def":  http.StatusBadRequest,
		"Bearer abc\tdef": http.StatusBadRequest,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		} else {
			want = http.StatusUnauthorized
		}
		tok, err := BearerToken(r)
		var e *Error
		switch {
		case want == 200 && (err != nil || tok != "abc"):
			t.Errorf("%q: %q %v", h, tok, err)
		case want != 200 && (!errors.As(err, &e) || e.Status != want):
			t.Errorf("%q: %v, want status %d", h, err, want)
		}
	}
}

// TestHandler_RoundTrip drives every endpoint of the handler over a real
// transmitter on an embedded NATS: a receiver creates, reads, changes and
// deletes its poll stream, sets its status, adds and removes a subject,
// asks for a verification SET and polls it; another receiver sees none of
// it.
func TestHandler_RoundTrip(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	auth := func(r *http.Request) (string, []string, error) {
		tok, err := BearerToken(r)
		if err != nil {
			return "", nil, err
		}
		switch tok {
		case "a":
			return "rcv-a", []string{ScopeManage}, nil
		case "b":
			return "rcv-b", []string{ScopeManage, ScopeRead}, nil
		}
		return "", nil, &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "token not valid"}
	}
	h := NewHandler(tr, auth, testIssuer)
	do := func(c call, want int) []byte {
		t.Helper()
		w := c.do(t, h)
		if w.Code != want {
			t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, w.Code, w.Body, want)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s %s: Cache-Control %q", c.method, c.path, cc)
		}
		return w.Body.Bytes()
	}

	// A create without a body is a poll stream of every event.
	var st Stream
	if err := json.Unmarshal(do(call{method: "POST", path: StreamPath, token: "a"}, http.StatusCreated), &st); err != nil {
		t.Fatal(err)
	}
	if st.ID == "" || st.Issuer != testIssuer || !reflect.DeepEqual(st.Audience, []string{"rcv-a"}) ||
		st.Delivery.Method != MethodPoll || st.Delivery.EndpointURL != testIssuer+PollPath+st.ID ||
		!reflect.DeepEqual(st.EventsDelivered, EventsSupported) {
		t.Errorf("created %+v", st)
	}
	q := "?stream_id=" + url.QueryEscape(st.ID)
	var one Stream
	if err := json.Unmarshal(do(call{method: "GET", path: StreamPath + q, token: "a"}, http.StatusOK), &one); err != nil || !reflect.DeepEqual(one, st) {
		t.Errorf("read %+v (%v), want %+v", one, err, st)
	}
	var list []Stream
	if err := json.Unmarshal(do(call{method: "GET", path: StreamPath, token: "a"}, http.StatusOK), &list); err != nil || len(list) != 1 || list[0].ID != st.ID {
		t.Errorf("list %+v (%v)", list, err)
	}
	if got := do(call{method: "GET", path: StreamPath, token: "b"}, http.StatusOK); string(got) != "[]\n" {
		t.Errorf("another receiver's list %s, want []", got)
	}

	// PATCH changes what it holds; PUT replaces every receiver-supplied member.
	var changed Stream
	json.Unmarshal(do(call{method: "PATCH", path: StreamPath, token: "a", ctype: jsonType,
		body: `{"stream_id":"` + st.ID + `","description":"renamed"}`}, http.StatusOK), &changed)
	if changed.Description != "renamed" || changed.Delivery != st.Delivery {
		t.Errorf("patched %+v", changed)
	}
	changed = Stream{}
	json.Unmarshal(do(call{method: "PUT", path: StreamPath, token: "a", ctype: jsonType,
		body: `{"stream_id":"` + st.ID + `","delivery":{"method":"` + MethodPoll + `"},"events_requested":["` + EventSessionRevoked + `"]}`}, http.StatusOK), &changed)
	if changed.Description != "" || !reflect.DeepEqual(changed.EventsRequested, []string{EventSessionRevoked}) {
		t.Errorf("replaced %+v", changed)
	}

	// Status.
	want := `{"stream_id":"` + st.ID + `","status":"enabled"}` + "\n"
	if got := do(call{method: "GET", path: StatusPath + q, token: "a"}, http.StatusOK); string(got) != want {
		t.Errorf("status %s, want %s", got, want)
	}
	want = `{"stream_id":"` + st.ID + `","status":"paused","reason":"maintenance"}` + "\n"
	if got := do(call{method: "POST", path: StatusPath, token: "a", ctype: jsonType,
		body: `{"stream_id":"` + st.ID + `","status":"paused","reason":"maintenance"}`}, http.StatusOK); string(got) != want {
		t.Errorf("set status %s, want %s", got, want)
	}
	if got := do(call{method: "GET", path: StatusPath + q, token: "a"}, http.StatusOK); string(got) != want {
		t.Errorf("status after pause %s, want %s", got, want)
	}
	do(call{method: "POST", path: StatusPath, token: "a", ctype: jsonType, body: `{"stream_id":"` + st.ID + `","status":"enabled"}`}, http.StatusOK)

	// Subjects: 200 with an empty body, 204.
	sub := `{"stream_id":"` + st.ID + `","subject":{"format":"opaque","id":"s-1"}`
	if got := do(call{method: "POST", path: AddSubjectPath, token: "a", ctype: jsonType, body: sub + `,"verified":true}`}, http.StatusOK); len(got) != 0 {
		t.Errorf("add subject answered %q, want an empty body", got)
	}
	do(call{method: "POST", path: RemoveSubjectPath, token: "a", ctype: jsonType, body: sub + `}`}, http.StatusNoContent)

	// Another receiver's stream does not exist for it.
	for _, c := range []call{
		{method: "GET", path: StreamPath + q},
		{method: "GET", path: StatusPath + q},
		{method: "POST", path: VerifyPath, ctype: jsonType, body: `{"stream_id":"` + st.ID + `"}`},
		{method: "POST", path: AddSubjectPath, ctype: jsonType, body: sub + `}`},
		{method: "POST", path: PollPath + st.ID, ctype: jsonType, body: `{"returnImmediately":true}`},
		{method: "DELETE", path: StreamPath + q},
	} {
		c.token = "b"
		wantError(t, c.do(t, h), http.StatusNotFound, "not_found")
	}

	// Verification, once per interval, and its SET by poll.
	do(call{method: "POST", path: VerifyPath, token: "a", ctype: jsonType, body: `{"stream_id":"` + st.ID + `","state":"st-1"}`}, http.StatusNoContent)
	wantError(t, call{method: "POST", path: VerifyPath, token: "a", ctype: jsonType, body: `{"stream_id":"` + st.ID + `","state":"st-2"}`}.do(t, h),
		http.StatusTooManyRequests, "slow_down")
	var polled PollResponse
	if err := json.Unmarshal(do(call{method: "POST", path: PollPath + st.ID, token: "a", ctype: jsonType, body: `{"maxEvents":5}`}, http.StatusOK), &polled); err != nil {
		t.Fatal(err)
	}
	if len(polled.Sets) != 1 {
		t.Fatalf("poll: %+v, want the verification SET", polled)
	}
	for jti, set := range polled.Sets {
		got, err := verifySET(set, &testKey().PublicKey)
		if err != nil || got.jti() != jti || got.eventType() != EventVerification || got.event()["state"] != "st-1" {
			t.Errorf("polled SET %v (%v), want the verification echoing st-1", got.claims, err)
		}
		body := do(call{method: "POST", path: PollPath + st.ID, token: "a", ctype: jsonType, body: `{"ack":["` + jti + `"],"returnImmediately":true}`}, http.StatusOK)
		if string(body) != `{"sets":{}}`+"\n" {
			t.Errorf("poll after the ack: %s, want no SET", body)
		}
	}

	do(call{method: "DELETE", path: StreamPath + q, token: "a"}, http.StatusNoContent)
	wantError(t, call{method: "GET", path: StreamPath + q, token: "a"}.do(t, h), http.StatusNotFound, "not_found")
}

// TestHandler_StartingIsRetried: before the transmitter has set up the bus
// its refusal is a 503 with Retry-After.
func TestHandler_StartingIsRetried(t *testing.T) {
	g := newRig(t)
	signer, err := NewSigner(testKey())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config{Conn: g.conn, Issuer: testIssuer, Signer: signer, Log: slog.New(slog.DiscardHandler),
		Open: func(bus.Delivery) (*bus.Event, error) { return nil, errors.New("not used") }})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(tr, fakeAuth(map[string][]string{"manage": {ScopeManage}}), "")
	w := call{method: "GET", path: StreamPath, token: "manage"}.do(t, h)
	wantError(t, w, http.StatusServiceUnavailable, "temporarily_unavailable")
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
}
