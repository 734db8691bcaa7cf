//go:build linux

package main

import (
	"bytes"
	"encoding/json"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation/federationtest"

	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
)

// The OpenAPI documents in docs/openapi describe the issuer's and the
// sidecar's HTTP APIs. TestOpenAPI_Binary drives the real herald binary
// through every documented operation and validates each request and
// answer against them, and TestOpenAPI_EveryRouteDocumented checks that
// every route the servers register is documented, so that neither the
// documents nor the code can drift alone.

const openapiDir = "../../docs/openapi"

// apiDoc is one OpenAPI document with its validator and the operations
// it documents, as ServeMux patterns ("GET /v1/sessions/{sid}").
type apiDoc struct {
	name  string
	model *v3.Document
	v     validator.Validator
	mux   *http.ServeMux
	ops   map[string]bool // pattern -> documented

	mu   sync.Mutex
	seen map[string][]int // pattern -> statuses answered
}

// loadAPIDoc parses and validates docs/openapi/<name>.yaml.
func loadAPIDoc(t *testing.T, name string) *apiDoc {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(openapiDir, name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(data)
	if err != nil {
		t.Fatalf("%s.yaml: %v", name, err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("%s.yaml: build model: %v", name, err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("%s.yaml: validator: %v", name, errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s.yaml is not valid OpenAPI: %s: %s", name, e.Message, e.Reason)
			for _, f := range e.SchemaValidationErrors {
				t.Errorf("  %s at %s (line %d)", f.Reason, f.KeywordLocation, f.Line)
			}
		}
		t.FailNow()
	}
	d := &apiDoc{name: name, model: &model.Model, v: v, mux: http.NewServeMux(), ops: map[string]bool{}, seen: map[string][]int{}}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			pattern := strings.ToUpper(method) + " " + muxPath(path)
			d.ops[pattern] = true
			d.mux.HandleFunc(pattern, func(http.ResponseWriter, *http.Request) {})
		}
	}
	return d
}

// muxPath turns an OpenAPI path into a ServeMux path: "/" matches only
// itself, and the last parameter of /v1/verify/{path} takes the rest.
func muxPath(p string) string {
	if p == "/" {
		return "/{$}"
	}
	if p == "/v1/verify/{path}" {
		return "/v1/verify/{path...}"
	}
	return p
}

// call sends req, validates the request (when valid, as a documented call
// must be; deliberately broken requests are checked for their answer only)
// and the answer against the document, records the operation, and returns
// the status and body.
func (d *apiDoc) call(t *testing.T, req *http.Request, valid bool) (int, http.Header, []byte) {
	t.Helper()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
	}
	fresh := func() *http.Request {
		r := req.Clone(req.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		return r
	}
	_, pattern := d.mux.Handler(fresh())
	if pattern == "" {
		t.Fatalf("%s: %s %s is not in the document", d.name, req.Method, req.URL.Path)
	}
	if valid {
		if ok, errs := d.v.ValidateHttpRequestSync(fresh()); !ok {
			for _, e := range errs {
				t.Errorf("%s: request %s %s does not match the document: %s: %s %v", d.name, req.Method, req.URL, e.Message, e.Reason, schemaErrs(e.SchemaValidationErrors))
			}
		}
	}
	resp, err := http.DefaultClient.Do(fresh())
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", req.Method, req.URL, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(got))
	if ok, errs := d.v.ValidateHttpResponse(fresh(), resp); !ok {
		for _, e := range errs {
			t.Errorf("%s: answer %d to %s %s does not match the document: %s: %s %v\nbody: %.300s", d.name, resp.StatusCode, req.Method, req.URL, e.Message, e.Reason, schemaErrs(e.SchemaValidationErrors), got)
		}
	}
	d.mu.Lock()
	d.seen[pattern] = append(d.seen[pattern], resp.StatusCode)
	d.mu.Unlock()
	return resp.StatusCode, resp.Header, got
}

func schemaErrs(errs any) string {
	b, _ := json.Marshal(errs)
	return string(b)
}

// must is call with a valid request that must be answered want.
func (d *apiDoc) must(t *testing.T, want int, req *http.Request) (http.Header, []byte) {
	t.Helper()
	code, h, body := d.call(t, req, true)
	if code != want {
		t.Fatalf("%s %s = %d, want %d: %s", req.Method, req.URL, code, want, body)
	}
	return h, body
}

// refused is call with a request that is wrong on purpose, which must be
// answered want, with an answer the document describes.
func (d *apiDoc) refused(t *testing.T, want int, req *http.Request, valid bool) []byte {
	t.Helper()
	code, _, body := d.call(t, req, valid)
	if code != want {
		t.Fatalf("%s %s = %d, want %d: %s", req.Method, req.URL, code, want, body)
	}
	return body
}

// checkCovered fails for every documented operation no call answered
// with a success, and for every required error status not seen.
func (d *apiDoc) checkCovered(t *testing.T, errorsWanted map[string][]int) {
	t.Helper()
	for op := range d.ops {
		ok := false
		for _, c := range d.seen[op] {
			if c < 400 {
				ok = true
			}
		}
		if !ok && !strings.HasPrefix(op, "GET /.herald/logout") {
			t.Errorf("%s: %s documented but never answered with a success (answers: %v)", d.name, op, d.seen[op])
		}
	}
	for op, codes := range errorsWanted {
		for _, c := range codes {
			found := false
			for _, s := range d.seen[op] {
				found = found || s == c
			}
			if !found {
				t.Errorf("%s: %s never answered %d (answers: %v)", d.name, op, c, d.seen[op])
			}
		}
	}
}

func newReq(t *testing.T, method, u string, body io.Reader) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func jsonReq(t *testing.T, method, u, bearer string, v any) *http.Request {
	t.Helper()
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	r := newReq(t, method, u, body)
	if v != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	return r
}

func formReq(t *testing.T, u string, form url.Values) *http.Request {
	t.Helper()
	r := newReq(t, http.MethodPost, u, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func decodeInto(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// caepSessionRevoked is the CAEP 1.0 event type of a revoked session.
const caepSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"

func TestOpenAPI_Binary(t *testing.T) {
	issuerDoc, sidecarDoc := loadAPIDoc(t, "issuer"), loadAPIDoc(t, "sidecar")
	f := newFleet(t)
	dir := t.TempDir()
	idp := federationtest.NewIdP(t)
	trustFile := filepath.Join(dir, "trust.json")
	trust := fmt.Sprintf(`{"issuers": [{"issuer": %q, "push_credential": "transmitter"}]}`, idp.URL)
	if err := os.WriteFile(trustFile, []byte(trust), 0o600); err != nil {
		t.Fatal(err)
	}
	iss := f.startIssuer(filepath.Join(dir, "issuer"), freeAddr(t), "--trust-issuers-file", trustFile)
	_, verURL := f.readyVerifier(filepath.Join(dir, "verifier"), iss.nats, "--heartbeat", "200ms")
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "app") }))
	defer app.Close()
	web := f.startVerifier(filepath.Join(dir, "web"), iss.nats, "127.0.0.1:0", "--upstream", app.URL,
		"--cookie-sessions", "--issuer-url", iss.url)
	webURL := web.waitLog(verifierReady, 20*time.Second)[1]
	admin, I, S := f.admin, iss.url, verURL

	t.Run("issuer", func(t *testing.T) {
		d := issuerDoc
		// Health, discovery, dashboard.
		d.must(t, 200, newReq(t, "GET", I+"/healthz", nil))
		d.must(t, 200, newReq(t, "GET", I+"/readyz", nil))
		d.must(t, 200, newReq(t, "GET", I+"/metrics", nil))
		d.must(t, 200, newReq(t, "GET", I+"/", nil))
		d.must(t, 200, newReq(t, "GET", I+"/dashboard/app.js", nil))
		d.must(t, 200, newReq(t, "GET", I+"/dashboard/app.css", nil))
		d.refused(t, 404, newReq(t, "GET", I+"/dashboard/nothing.js", nil), true)
		d.must(t, 200, newReq(t, "GET", I+"/.well-known/jwks.json", nil))
		d.must(t, 200, newReq(t, "GET", I+"/.well-known/oauth-authorization-server", nil))
		d.must(t, 200, newReq(t, "GET", I+"/.well-known/openid-configuration", nil))

		// Sessions.
		var s1, s2 struct {
			ID      string `json:"session_id"`
			Access  string `json:"access_token"`
			Refresh string `json:"refresh_token"`
		}
		_, b := d.must(t, 200, jsonReq(t, "POST", I+"/v1/sessions", admin, map[string]any{"sub": "alice", "tenant": "acme", "scope": "read", "ttl": "90s"}))
		decodeInto(t, b, &s1)
		_, b = d.must(t, 200, jsonReq(t, "POST", I+"/v1/sessions", admin, map[string]any{"sub": "alice", "ttl": 60}))
		decodeInto(t, b, &s2)
		d.refused(t, 400, jsonReq(t, "POST", I+"/v1/sessions", admin, map[string]any{"sub": "alice", "color": "red"}), false)
		d.refused(t, 401, jsonReq(t, "POST", I+"/v1/sessions", "", map[string]any{"sub": "alice"}), false)
		d.refused(t, 401, jsonReq(t, "POST", I+"/v1/sessions", "hrld_wrong", map[string]any{"sub": "alice"}), true)
		d.must(t, 200, jsonReq(t, "GET", I+"/v1/sessions?sub=alice", admin, nil))

		// Named credentials, and a credential without the scope.
		var cred struct {
			Token string `json:"token"`
		}
		_, b = d.must(t, 201, jsonReq(t, "POST", I+"/v1/credentials", admin, map[string]any{"name": "ro", "scopes": []string{"read"}}))
		decodeInto(t, b, &cred)
		d.refused(t, 409, jsonReq(t, "POST", I+"/v1/credentials", admin, map[string]any{"name": "ro", "scopes": []string{"read"}}), true)
		d.refused(t, 400, jsonReq(t, "POST", I+"/v1/credentials", admin, map[string]any{"name": "bad", "scopes": []string{"root"}}), false)
		d.must(t, 200, jsonReq(t, "GET", I+"/v1/credentials", admin, nil))
		_, b = d.must(t, 200, jsonReq(t, "POST", I+"/v1/credentials/ro/rotate", admin, nil))
		decodeInto(t, b, &cred)
		d.refused(t, 403, jsonReq(t, "POST", I+"/v1/sessions", cred.Token, map[string]any{"sub": "alice"}), true)
		d.must(t, 200, jsonReq(t, "GET", I+"/v1/sessions?sub=alice", cred.Token, nil))
		d.must(t, 204, jsonReq(t, "DELETE", I+"/v1/credentials/ro", admin, nil))
		d.refused(t, 404, jsonReq(t, "DELETE", I+"/v1/credentials/ro", admin, nil), true)
		d.refused(t, 404, jsonReq(t, "POST", I+"/v1/credentials/ro/rotate", admin, nil), true)

		// Machine clients and the token endpoint.
		var client struct {
			ID     string `json:"client_id"`
			Secret string `json:"client_secret"`
		}
		_, b = d.must(t, 201, jsonReq(t, "POST", I+"/v1/clients", admin, map[string]any{"name": "billing", "scope": "invoices:read"}))
		decodeInto(t, b, &client)
		d.must(t, 200, jsonReq(t, "GET", I+"/v1/clients", admin, nil))
		_, b = d.must(t, 200, jsonReq(t, "POST", I+"/v1/clients/"+client.ID+"/secret", admin, nil))
		decodeInto(t, b, &client)
		d.refused(t, 404, jsonReq(t, "POST", I+"/v1/clients/nosuchclient/secret", admin, nil), true)
		cc := formReq(t, I+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"invoices:read"}})
		cc.SetBasicAuth(client.ID, client.Secret)
		_, b = d.must(t, 200, cc)
		var ccTok struct {
			Access string `json:"access_token"`
		}
		decodeInto(t, b, &ccTok)
		bad := formReq(t, I+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}})
		bad.SetBasicAuth(client.ID, "wrong-secret")
		d.refused(t, 401, bad, true)
		d.refused(t, 400, formReq(t, I+"/oauth2/token", url.Values{"grant_type": {"password"}}), true)
		_, b = d.must(t, 200, formReq(t, I+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s2.Refresh}}))
		var rotated struct {
			Refresh string `json:"refresh_token"`
		}
		decodeInto(t, b, &rotated)
		// The used token again: reuse, the session is revoked.
		d.refused(t, 400, formReq(t, I+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s2.Refresh}}), true)

		// Introspection and RFC 7009 revocation.
		intro := formReq(t, I+"/oauth2/introspect", url.Values{"token": {s1.Access}})
		intro.Header.Set("Authorization", "Bearer "+admin)
		_, b = d.must(t, 200, intro)
		var in struct {
			Active bool `json:"active"`
		}
		decodeInto(t, b, &in)
		if !in.Active {
			t.Errorf("introspect a live token: %s", b)
		}
		d.refused(t, 401, formReq(t, I+"/oauth2/introspect", url.Values{"token": {s1.Access}}), false)
		d.must(t, 200, formReq(t, I+"/oauth2/revoke", url.Values{"token": {"not-a-token"}}))
		d.refused(t, 400, formReq(t, I+"/oauth2/revoke", url.Values{}), false)
		rv := formReq(t, I+"/oauth2/revoke", url.Values{"token": {ccTok.Access}})
		rv.SetBasicAuth(client.ID, client.Secret)
		d.must(t, 200, rv)

		// Ending sessions.
		var s3 struct {
			ID      string `json:"session_id"`
			Refresh string `json:"refresh_token"`
		}
		_, b = d.must(t, 200, jsonReq(t, "POST", I+"/v1/sessions", admin, map[string]any{"sub": "carol"}))
		decodeInto(t, b, &s3)
		d.refused(t, 400, formReq(t, I+"/v1/sessions/end", url.Values{"session_id": {s3.ID}, "refresh_token": {rotated.Refresh}}), true)
		d.must(t, 200, formReq(t, I+"/v1/sessions/end", url.Values{"session_id": {s3.ID}, "refresh_token": {s3.Refresh}, "reason": {"logout"}}))
		d.must(t, 200, jsonReq(t, "DELETE", I+"/v1/sessions/"+s1.ID+"?reason=test", admin, nil))

		// Signals from a trusted identity provider.
		var transmitter struct {
			Token string `json:"token"`
		}
		_, b = d.must(t, 201, jsonReq(t, "POST", I+"/v1/credentials", admin, map[string]any{"name": "transmitter", "scopes": []string{"signals"}}))
		decodeInto(t, b, &transmitter)
		d.must(t, 200, formReq(t, I+"/oidc/backchannel-logout", url.Values{"logout_token": {idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "idp-session-1" })}}))
		d.refused(t, 400, formReq(t, I+"/oidc/backchannel-logout", url.Values{"logout_token": {"not-a-token"}}), true)
		pushSET := func(cred, set string) *http.Request {
			r := newReq(t, "POST", I+"/ssf/push", strings.NewReader(set))
			r.Header.Set("Content-Type", "application/secevent+jwt")
			r.Header.Set("Authorization", "Bearer "+cred)
			return r
		}
		d.must(t, 202, pushSET(transmitter.Token, idp.SET(t, caepSessionRevoked, map[string]any{"format": "opaque", "id": "idp-session-2"}, nil)))
		d.refused(t, 400, pushSET(transmitter.Token, "not-a-set"), true)
		d.refused(t, 401, pushSET("hrld_wrong", idp.SET(t, caepSessionRevoked, map[string]any{"format": "opaque", "id": "idp-session-3"}, nil)), true)

		// The SSF transmitter: a receiver's streams, and the operator's view.
		var rcv struct {
			ID     string `json:"client_id"`
			Secret string `json:"client_secret"`
		}
		_, b = d.must(t, 201, jsonReq(t, "POST", I+"/v1/clients", admin, map[string]any{"name": "receiver", "scope": "ssf.manage ssf.read"}))
		decodeInto(t, b, &rcv)
		rcc := formReq(t, I+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}})
		rcc.SetBasicAuth(rcv.ID, rcv.Secret)
		_, b = d.must(t, 200, rcc)
		var rtok struct {
			Access string `json:"access_token"`
		}
		decodeInto(t, b, &rtok)
		R := rtok.Access
		d.must(t, 200, newReq(t, "GET", I+"/.well-known/ssf-configuration", nil))
		d.must(t, 200, newReq(t, "GET", I+"/ssf/jwks.json", nil))
		bustest.WaitFor(t, 20*time.Second, func() error { // the transmitter sets up the bus as the issuer starts
			if code, _, b := d.call(t, jsonReq(t, "GET", I+"/ssf/stream", R, nil), true); code != http.StatusOK {
				return fmt.Errorf("list streams: %d %s", code, b)
			}
			return nil
		})
		d.refused(t, 401, jsonReq(t, "GET", I+"/ssf/stream", "not-a-token", nil), true)
		d.refused(t, 400, jsonReq(t, "GET", I+"/ssf/stream?access_token="+R, "", nil), false)
		bcc := formReq(t, I+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}})
		bcc.SetBasicAuth(client.ID, client.Secret)
		_, b = d.must(t, 200, bcc) // billing's token: no SSF scope
		decodeInto(t, b, &ccTok)
		d.refused(t, 403, jsonReq(t, "POST", I+"/ssf/stream", ccTok.Access, map[string]any{}), true)
		var st struct {
			ID string `json:"stream_id"`
		}
		_, b = d.must(t, 201, jsonReq(t, "POST", I+"/ssf/stream", R, map[string]any{"description": "a poll stream"}))
		decodeInto(t, b, &st)
		q := "?stream_id=" + url.QueryEscape(st.ID)
		d.must(t, 200, jsonReq(t, "GET", I+"/ssf/stream"+q, R, nil))
		d.must(t, 200, jsonReq(t, "PATCH", I+"/ssf/stream", R, map[string]any{"stream_id": st.ID, "description": "renamed"}))
		d.must(t, 200, jsonReq(t, "PUT", I+"/ssf/stream", R, map[string]any{"stream_id": st.ID,
			"delivery": map[string]any{"method": "urn:ietf:rfc:8936"}, "events_requested": []string{caepSessionRevoked}}))
		d.refused(t, 404, jsonReq(t, "GET", I+"/ssf/stream?stream_id=nosuchstream", R, nil), true)
		d.must(t, 200, jsonReq(t, "GET", I+"/ssf/status"+q, R, nil))
		d.must(t, 200, jsonReq(t, "POST", I+"/ssf/status", R, map[string]any{"stream_id": st.ID, "status": "enabled"}))
		d.refused(t, 400, jsonReq(t, "POST", I+"/ssf/status", R, map[string]any{"stream_id": st.ID, "status": "stopped"}), false)
		subject := map[string]any{"format": "opaque", "id": "s-1"}
		d.must(t, 200, jsonReq(t, "POST", I+"/ssf/subjects:add", R, map[string]any{"stream_id": st.ID, "subject": subject, "verified": true}))
		d.must(t, 204, jsonReq(t, "POST", I+"/ssf/subjects:remove", R, map[string]any{"stream_id": st.ID, "subject": subject}))
		d.must(t, 204, jsonReq(t, "POST", I+"/ssf/verify", R, map[string]any{"stream_id": st.ID, "state": "st-1"}))
		d.refused(t, 429, jsonReq(t, "POST", I+"/ssf/verify", R, map[string]any{"stream_id": st.ID, "state": "st-2"}), true)
		_, b = d.must(t, 200, jsonReq(t, "POST", I+"/ssf/poll/"+st.ID, R, map[string]any{"maxEvents": 1}))
		var polled struct {
			Sets map[string]string `json:"sets"`
		}
		decodeInto(t, b, &polled)
		if len(polled.Sets) != 1 {
			t.Fatalf("poll after a verification request: %s, want its SET", b)
		}
		for jti := range polled.Sets {
			d.must(t, 200, jsonReq(t, "POST", I+"/ssf/poll/"+st.ID, R, map[string]any{"ack": []string{jti}, "returnImmediately": true}))
		}
		d.must(t, 200, jsonReq(t, "GET", I+"/v1/ssf/streams", admin, nil))
		d.must(t, 200, jsonReq(t, "POST", I+"/v1/ssf/streams/"+st.ID+"/status", admin, map[string]any{"status": "paused", "reason": "maintenance"}))
		d.refused(t, 404, jsonReq(t, "DELETE", I+"/v1/ssf/streams/nosuchstream", admin, nil), true)
		d.must(t, 204, jsonReq(t, "DELETE", I+"/v1/ssf/streams/"+st.ID, admin, nil))
		_, b = d.must(t, 201, jsonReq(t, "POST", I+"/ssf/stream", R, nil))
		decodeInto(t, b, &st)
		d.must(t, 204, jsonReq(t, "DELETE", I+"/ssf/stream?stream_id="+url.QueryEscape(st.ID), R, nil))
		d.refused(t, 404, jsonReq(t, "DELETE", I+"/ssf/stream?stream_id="+url.QueryEscape(st.ID), R, nil), true)

		// Revocations.
		d.must(t, 200, jsonReq(t, "POST", I+"/v1/revocations", admin, map[string]any{"kind": "subject", "value": "bob", "reason": "test"}))
		d.must(t, 200, jsonReq(t, "POST", I+"/v1/revocations?dry_run=true", admin, map[string]any{"kind": "subject", "value": "alice"}))
		d.must(t, 200, jsonReq(t, "POST", I+"/v1/revocations?wait=10s", admin, map[string]any{"kind": "token", "values": []string{"j1", "j2"}}))
		d.refused(t, 400, jsonReq(t, "POST", I+"/v1/revocations", admin, map[string]any{"kind": "everything"}), false)
		d.refused(t, 400, jsonReq(t, "POST", I+"/v1/revocations", admin, map[string]any{"kind": "all", "value": "x"}), true)
		d.refused(t, 400, jsonReq(t, "POST", I+"/v1/revocations?wait=forever", admin, map[string]any{"kind": "subject", "value": "x"}), true)
		d.must(t, 200, jsonReq(t, "GET", I+"/v1/revocations?kind=subject&since=10m&limit=5", admin, nil))
		d.must(t, 200, jsonReq(t, "GET", I+"/v1/audit?action=revoke", admin, nil))
		d.refused(t, 400, jsonReq(t, "GET", I+"/v1/audit?since=yesterday", admin, nil), true)
		d.must(t, 200, jsonReq(t, "GET", I+"/v1/verifiers", admin, nil))
		h, _ := d.must(t, 200, jsonReq(t, "GET", I+"/v1/events?from=start&follow=false&type=revocation", admin, nil))
		if ct := h.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("events Content-Type = %q", ct)
		}
		d.must(t, 200, jsonReq(t, "POST", I+"/v1/keys/rotate", admin, nil))
		d.must(t, 200, jsonReq(t, "DELETE", I+"/v1/clients/"+client.ID+"?reason=test", admin, nil))
		d.refused(t, 404, jsonReq(t, "DELETE", I+"/v1/clients/nosuchclient", admin, nil), true)
	})

	t.Run("sidecar", func(t *testing.T) {
		d := sidecarDoc
		d.must(t, 200, newReq(t, "GET", S+"/healthz", nil))
		d.must(t, 200, newReq(t, "GET", S+"/readyz", nil))
		d.must(t, 200, newReq(t, "GET", S+"/metrics", nil))
		d.must(t, 200, newReq(t, "GET", S+"/v1/status", nil))
		var s struct {
			ID     string `json:"session_id"`
			Access string `json:"access_token"`
		}
		_, b := issuerDoc.must(t, 200, jsonReq(t, "POST", I+"/v1/sessions", admin, map[string]any{"sub": "dave", "tenant": "acme"}))
		decodeInto(t, b, &s)
		h, _ := d.must(t, 200, jsonReq(t, "GET", S+"/v1/verify", s.Access, nil))
		if got := h.Get("X-Herald-Subject"); got != "dave" {
			t.Errorf("X-Herald-Subject = %q, want dave", got)
		}
		d.must(t, 200, jsonReq(t, "HEAD", S+"/v1/verify", s.Access, nil))
		d.must(t, 200, jsonReq(t, "POST", S+"/v1/verify", s.Access, nil))
		d.must(t, 200, jsonReq(t, "GET", S+"/v1/verify/orders", s.Access, nil))
		d.must(t, 200, jsonReq(t, "POST", S+"/v1/verify/orders", s.Access, nil))
		d.refused(t, 401, newReq(t, "GET", S+"/v1/verify", nil), true)
		d.refused(t, 401, jsonReq(t, "GET", S+"/v1/verify", "not.a.jwt", nil), true)
		d.refused(t, 401, jsonReq(t, "POST", S+"/v1/verify/orders", "not.a.jwt", nil), true)
		d.refused(t, 401, jsonReq(t, "HEAD", S+"/v1/verify", "not.a.jwt", nil), true)
		issuerDoc.must(t, 200, jsonReq(t, "POST", I+"/v1/revocations?wait=10s", admin, map[string]any{"kind": "session", "value": s.ID}))
		body := d.refused(t, 401, jsonReq(t, "GET", S+"/v1/verify", s.Access, nil), true)
		if !bytes.Contains(body, []byte(`"revoked"`)) {
			t.Errorf("verify a revoked token: %s", body)
		}

		// Cookie sessions: logout on the application's listener.
		out := newReq(t, "POST", webURL+"/.herald/logout", nil)
		out.Header.Set("Sec-Fetch-Site", "same-origin")
		d.must(t, 204, out)
		cross := newReq(t, "POST", webURL+"/.herald/logout", nil)
		cross.Header.Set("Sec-Fetch-Site", "cross-site")
		d.refused(t, 403, cross, true)
		d.refused(t, 405, newReq(t, "GET", webURL+"/.herald/logout", nil), true)
	})

	if t.Failed() {
		return
	}
	issuerDoc.checkCovered(t, map[string][]int{
		"POST /v1/sessions":    {400, 401, 403},
		"POST /v1/revocations": {400},
		"POST /oauth2/token":   {400, 401},
		"POST /v1/credentials": {400, 409},
		"GET /ssf/stream":      {400, 401, 404},
		"POST /ssf/stream":     {403},
		"POST /ssf/verify":     {429},
	})
	sidecarDoc.checkCovered(t, map[string][]int{
		"GET /v1/verify":            {401},
		"POST /.herald/logout":      {403},
		"GET /.herald/logout":       {405},
		"POST /v1/verify/{path...}": {401},
	})
}

// registration matches a route registered on a ServeMux in the servers'
// code: HandleFunc("GET /path", ...), Handle("/", ...), or a pattern
// built from a constant ("POST "+SessionEndPath, ownPrefix, pkg.Path).
var (
	registration = regexp.MustCompile(`\.Handle(?:Func)?\(\s*("[^"]*"|[\w.]+)(?:\s*\+\s*([\w.]+))?\s*,`)
	stringConst  = regexp.MustCompile(`(?m)^\s*(?:const\s+|var\s+)?(\w+)\s*(?:string\s*)?=\s*"([^"]*)"`)
)

// TestOpenAPI_EveryRouteDocumented reads the routes that package issuer
// and package verifier (with its subpackages) register and fails for any
// the OpenAPI documents do not describe.
func TestOpenAPI_EveryRouteDocumented(t *testing.T) {
	docs := []*apiDoc{loadAPIDoc(t, "issuer"), loadAPIDoc(t, "sidecar")}
	srcs := map[string][]string{} // directory -> its non-test sources
	consts := map[string]string{} // string constants of every scanned package, by name
	for _, root := range []string{"../../issuer", "../../verifier", "../../ssf"} {
		err := filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			srcs[filepath.Dir(path)] = append(srcs[filepath.Dir(path)], string(b))
			for _, m := range stringConst.FindAllStringSubmatch(string(b), -1) {
				consts[m[1]] = m[2]
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	routes := 0
	for dir, files := range srcs {
		for _, src := range files {
			for _, m := range registration.FindAllStringSubmatch(src, -1) {
				pattern := resolve(t, consts, m[1]) + resolve(t, consts, m[2])
				routes++
				if !documented(docs, pattern) {
					t.Errorf("%s registers %q, which no document in docs/openapi describes", dir, pattern)
				}
			}
		}
	}
	if routes < 30 {
		t.Fatalf("found %d route registrations in issuer and verifier; the pattern no longer matches the code", routes)
	}
}

// resolve returns the string a literal or constant stands for.
func resolve(t *testing.T, consts map[string]string, s string) string {
	t.Helper()
	if s == "" {
		return ""
	}
	if strings.HasPrefix(s, `"`) {
		return strings.Trim(s, `"`)
	}
	if i := strings.LastIndex(s, "."); i >= 0 {
		s = s[i+1:] // a constant of another scanned package
	}
	v, ok := consts[s]
	if !ok {
		t.Fatalf("route registered with %s, a name this test cannot resolve", s)
	}
	return v
}

// documented reports whether a ServeMux pattern is described: "/" is the
// proxy's catch-all (the application's paths, described as such), a
// pattern ending in "/" needs a documented path under it, and any other
// needs its path with its method (any method when it has none).
func documented(docs []*apiDoc, pattern string) bool {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	if path == "/" && method == "" {
		return true
	}
	var ops []string
	for _, d := range docs {
		for op := range d.ops {
			ops = append(ops, op)
		}
	}
	sort.Strings(ops)
	for _, op := range ops {
		m, p, _ := strings.Cut(op, " ")
		if method != "" && m != method {
			continue
		}
		if p == path || (strings.HasSuffix(path, "/") && strings.HasPrefix(p, path)) {
			return true
		}
	}
	return false
}
