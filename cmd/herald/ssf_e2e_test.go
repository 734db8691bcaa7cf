//go:build linux

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// The SSF tests drive Herald's transmitter from outside, as its users do:
// the built binary run as 'herald dev', its CLI, its HTTP endpoints, and
// an SSF receiver Herald did not write (testdata/ssf-receiver: npm jose
// verifies every SET, and the receiver checks SSF 1.0 and the CAEP
// interoperability profile).

// devReady is the ready line of herald dev.
var devReady = regexp.MustCompile(`msg="herald dev ready" issuer=(\S+) verifier=(\S+)`)

// devHerald is a whole deployment: the herald binary running 'herald
// dev' (embedded NATS, issuer, one verifier) on its own data directory
// and free ports.
type devHerald struct {
	t        *testing.T
	bin      string
	args     []string
	proc     *proc
	dir      string
	issuer   string // the issuer's URL, also its iss
	verifier string // the verifier's URL
}

// startHeraldDev runs 'herald dev' named name with extra flags and waits
// for its ready line.
func startHeraldDev(t *testing.T, name string, extra ...string) *devHerald {
	t.Helper()
	d := &devHerald{t: t, bin: heraldBinary(t), dir: filepath.Join(t.TempDir(), name)}
	args := append([]string{"dev", "--data", d.dir, "--http", "127.0.0.1:0", "--verifier-http", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:0"}, extra...)
	d.args = args
	d.start(name)
	return d
}

// start starts the process and waits for its ready line.
func (d *devHerald) start(name string) {
	d.t.Helper()
	// The admin token is the one herald dev writes to its data directory,
	// not one of the test's environment.
	d.proc = startProc(d.t, name, []string{"HERALD_ADMIN_TOKEN="}, d.bin, d.args...)
	m := d.proc.waitLog(devReady, 30*time.Second)
	d.issuer, d.verifier = m[1], m[2]
}

// restart starts the deployment again after its process was killed, on
// the same data and flags.
func (d *devHerald) restart() {
	d.t.Helper()
	d.proc.kill()
	issuer := d.issuer
	d.start(d.proc.name)
	if d.issuer != issuer {
		d.t.Fatalf("%s restarted as %s, was %s", d.proc.name, d.issuer, issuer)
	}
}

// herald runs the herald CLI command (as "client create") with args
// against the deployment, as its admin, and returns its standard output.
func (d *devHerald) herald(command string, args ...string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.t.Context(), 30*time.Second)
	defer cancel()
	args = append(append(strings.Fields(command), "--issuer-url", d.issuer,
		"--admin-token-file", filepath.Join(d.dir, issuer.AdminTokenFile)), args...)
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = append(os.Environ(), "HERALD_ADMIN_TOKEN=")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// heraldJSON runs the herald CLI and decodes its JSON output into v.
func (d *devHerald) heraldJSON(v any, command string, args ...string) {
	d.t.Helper()
	out := d.herald(command, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		d.t.Fatalf("herald %s %s: output %q: %v", command, strings.Join(args, " "), out, err)
	}
}

// createClient registers an OAuth client with scope through the CLI.
func (d *devHerald) createClient(name, scope string) issuer.Client {
	d.t.Helper()
	var c issuer.Client
	d.heraldJSON(&c, "client create", name, "--scope", scope)
	if c.ID == "" || c.Secret == "" || c.Scope != scope {
		d.t.Fatalf("client create %s: %+v, want an id, a secret and scope %q", name, c, scope)
	}
	return c
}

// clientToken gets an access token for c with scope from the issuer's
// token endpoint (client_credentials, client_secret_basic).
func (d *devHerald) clientToken(c issuer.Client, scope string) string {
	d.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, err := http.NewRequestWithContext(d.t.Context(), "POST", d.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		d.t.Fatalf("client_credentials token for %s, scope %q: %d %s", c.ID, scope, resp.StatusCode, body)
	}
	return tok.AccessToken
}

// login creates a session for sub with 'herald token', as a login service
// would.
func (d *devHerald) login(sub string) session {
	d.t.Helper()
	var s session
	d.heraldJSON(&s, "token", "--json", sub)
	if s.ID == "" || s.Access == "" {
		d.t.Fatalf("herald token %s: %+v, want a session and an access token", sub, s)
	}
	return s
}

// revoke runs 'herald revoke KIND VALUE' and returns the revocation's
// event id: the txn of the SETs it becomes.
func (d *devHerald) revoke(kind, value, reason string) string {
	d.t.Helper()
	var res issuer.RevocationResult
	d.heraldJSON(&res, "revoke", "--reason", reason, "--json", kind, value)
	if res.ID == "" {
		d.t.Fatalf("revoke %s %s: no event id in %+v", kind, value, res)
	}
	return res.ID
}

// ssfMetadata is the transmitter configuration metadata the tests use.
type ssfMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	ConfigurationEndpoint string `json:"configuration_endpoint"`
	StatusEndpoint        string `json:"status_endpoint"`
	AddSubjectEndpoint    string `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint string `json:"remove_subject_endpoint"`
	VerificationEndpoint  string `json:"verification_endpoint"`
}

// ssfStream is a stream configuration as the transmitter shows it.
type ssfStream struct {
	ID              string   `json:"stream_id"`
	Issuer          string   `json:"iss"`
	Audience        []string `json:"aud"`
	EventsSupported []string `json:"events_supported"`
	EventsRequested []string `json:"events_requested"`
	EventsDelivered []string `json:"events_delivered"`
	Delivery        struct {
		Method              string `json:"method"`
		EndpointURL         string `json:"endpoint_url"`
		AuthorizationHeader string `json:"authorization_header"`
	} `json:"delivery"`
	MinVerificationInterval int    `json:"min_verification_interval"`
	Description             string `json:"description"`
}

// rsaBits returns the size of a JWK's modulus.
func rsaBits(t *testing.T, n string) int {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatalf("modulus %q: %v", n, err)
	}
	return new(big.Int).SetBytes(b).BitLen()
}

// TestSSF_ConformancePlan runs the OpenID SSF conformance plan's
// transmitter checks against 'herald dev', with a receiver Herald did not
// write: the metadata and key set; the management API's authorization
// (no token, a bad token, a token in the query, a read-only token, another
// receiver's stream); a push stream created, read, updated, paused and
// enabled, and deleted; verification over push and over poll (poll only,
// poll and acknowledge, acknowledge only); a session and a subject
// revocation arrive as CAEP session-revoked SETs, and a revocation no
// event fits (a key, a token) is not sent; a removed subject's
// revocations are not sent until it is added again. Every SET passes
// every check of the receiver.
func TestSSF_ConformancePlan(t *testing.T) {
	d := startHeraldDev(t, "herald")

	// Metadata, exactly.
	var meta map[string]any
	getJSON(t, d.issuer+"/.well-known/ssf-configuration", &meta)
	want := map[string]any{
		"spec_version":               "1_0",
		"issuer":                     d.issuer,
		"jwks_uri":                   d.issuer + "/ssf/jwks.json",
		"delivery_methods_supported": []any{ssfPush, ssfPoll},
		"configuration_endpoint":     d.issuer + "/ssf/stream",
		"status_endpoint":            d.issuer + "/ssf/status",
		"add_subject_endpoint":       d.issuer + "/ssf/subjects:add",
		"remove_subject_endpoint":    d.issuer + "/ssf/subjects:remove",
		"verification_endpoint":      d.issuer + "/ssf/verify",
		"authorization_schemes":      []any{map[string]any{"spec_urn": "urn:ietf:rfc:6749"}},
		"default_subjects":           "ALL",
	}
	if got, _ := json.Marshal(meta); string(got) != mustJSON(t, want) {
		t.Fatalf("ssf-configuration:\n%s\nwant\n%s", got, mustJSON(t, want))
	}
	var m ssfMetadata
	getJSON(t, d.issuer+"/.well-known/ssf-configuration", &m)

	// The key set holds the transmitter key alone: RS256, 2048 bits or
	// more, public, and none of the token signing keys.
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	getJSON(t, m.JWKSURI, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("jwks_uri holds %d keys, want the transmitter key alone: %v", len(set.Keys), set.Keys)
	}
	k := set.Keys[0]
	n, _ := k["n"].(string)
	if k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" || k["kid"] == "" || rsaBits(t, n) < 2048 || k["d"] != nil {
		t.Fatalf("transmitter key %v: want a public RSA key of at least 2048 bits, RS256, use sig, with a kid", k)
	}
	var discovery struct {
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, d.issuer+"/.well-known/openid-configuration", &discovery)
	var tokenKeys struct {
		Keys []map[string]any `json:"keys"`
	}
	getJSON(t, discovery.JWKSURI, &tokenKeys)
	for _, tk := range tokenKeys.Keys {
		if tk["kid"] == k["kid"] || tk["n"] == k["n"] {
			t.Fatalf("the transmitter key %v is also a token key", k["kid"])
		}
	}

	// Receivers are OAuth clients of the issuer.
	rp := d.createClient("acme-saas", "ssf.manage ssf.read")
	other := d.createClient("other-saas", "ssf.manage ssf.read")
	manage := d.clientToken(rp, "ssf.manage ssf.read")
	read := d.clientToken(rp, "ssf.read")
	otherManage := d.clientToken(other, "ssf.manage")
	user := d.login("alice")

	pushAuth := "Bearer " + randomSecret(t)
	r := startSSFReceiver(t, d.issuer, rp.ID, pushAuth)
	createBody := map[string]any{
		"delivery":         map[string]any{"method": ssfPush, "endpoint_url": r.url + "/push", "authorization_header": pushAuth},
		"events_requested": []string{ssfSessionRevoked},
		"description":      "acme's push stream",
	}

	// Negative authorization: nothing is created. A code of 0 is 401
	// or 403.
	for name, tc := range map[string]struct {
		method, target, token string
		body                  any
		code                  int
		errCode               string
	}{
		"no token":          {"POST", m.ConfigurationEndpoint, "", createBody, 401, ""},
		"bad token":         {"POST", m.ConfigurationEndpoint, "not-a-token", createBody, 401, "invalid_token"},
		"token in query":    {"GET", m.ConfigurationEndpoint + "?access_token=" + url.QueryEscape(manage), "", nil, 400, "invalid_request"},
		"read-only token":   {"POST", m.ConfigurationEndpoint, read, createBody, 403, "insufficient_scope"},
		"a user's token":    {"POST", m.ConfigurationEndpoint, user.Access, createBody, 0, ""},
		"no token, status":  {"GET", m.StatusEndpoint + "?stream_id=x", "", nil, 401, ""},
		"no token, verify":  {"POST", m.VerificationEndpoint, "", map[string]any{"stream_id": "x"}, 401, ""},
		"read-only, verify": {"POST", m.VerificationEndpoint, read, map[string]any{"stream_id": "x"}, 403, "insufficient_scope"},
	} {
		c := ssfHTTP(t, tc.method, tc.target, tc.token, tc.body)
		refused := c.code == tc.code || tc.code == 0 && (c.code == http.StatusUnauthorized || c.code == http.StatusForbidden)
		if !refused || (tc.errCode != "" && c.errorCode() != tc.errCode) {
			t.Errorf("%s: %d %s, want %d %s", name, c.code, c.body, tc.code, tc.errCode)
		}
		if c.code == http.StatusUnauthorized && !strings.HasPrefix(c.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without a Bearer WWW-Authenticate: %q", name, c.header.Get("WWW-Authenticate"))
		}
		if c.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", name, c.header.Get("Cache-Control"))
		}
	}
	if c := ssfHTTP(t, "GET", m.ConfigurationEndpoint, manage, nil); c.code != http.StatusOK || strings.TrimSpace(string(c.body)) != "[]" {
		t.Fatalf("streams after the refused requests: %d %s, want none", c.code, c.body)
	}

	// A push stream: created, read, its status.
	c := ssfHTTP(t, "POST", m.ConfigurationEndpoint, manage, createBody)
	if c.code != http.StatusCreated {
		t.Fatalf("create the push stream: %d %s", c.code, c.body)
	}
	var push ssfStream
	c.json(t, &push)
	if push.ID == "" || push.Issuer != d.issuer || !slices.Equal(push.Audience, []string{rp.ID}) ||
		!slices.Equal(push.EventsSupported, []string{ssfSessionRevoked}) || !slices.Equal(push.EventsRequested, []string{ssfSessionRevoked}) ||
		!slices.Equal(push.EventsDelivered, []string{ssfSessionRevoked}) || push.Delivery.Method != ssfPush ||
		push.Delivery.EndpointURL != r.url+"/push" || push.MinVerificationInterval != 10 || push.Description != "acme's push stream" {
		t.Fatalf("created stream %s", c.body)
	}
	if strings.Contains(string(c.body), pushAuth) {
		t.Fatalf("the created stream shows its authorization_header: %s", c.body)
	}
	streamURL := m.ConfigurationEndpoint + "?stream_id=" + url.QueryEscape(push.ID)
	for name, token := range map[string]string{"manager": manage, "reader": read} {
		var got ssfStream
		if c := ssfHTTP(t, "GET", streamURL, token, nil); c.code != http.StatusOK {
			t.Fatalf("read the stream as its %s: %d %s", name, c.code, c.body)
		} else {
			c.json(t, &got)
		}
		if got.ID != push.ID || got.Delivery.EndpointURL != push.Delivery.EndpointURL || got.Delivery.AuthorizationHeader != "" {
			t.Errorf("read the stream as its %s: %+v", name, got)
		}
	}
	for name, tc := range map[string]struct {
		method, target string
		body           any
	}{
		"read":   {"GET", streamURL, nil},
		"status": {"GET", m.StatusEndpoint + "?stream_id=" + url.QueryEscape(push.ID), nil},
		"verify": {"POST", m.VerificationEndpoint, map[string]any{"stream_id": push.ID, "state": "x"}},
		"delete": {"DELETE", streamURL, nil},
	} {
		if c := ssfHTTP(t, tc.method, tc.target, otherManage, tc.body); c.code != http.StatusNotFound {
			t.Errorf("another receiver's %s of the stream: %d %s, want 404", name, c.code, c.body)
		}
	}
	var status struct {
		ID     string `json:"stream_id"`
		Status string `json:"status"`
	}
	ssfHTTP(t, "GET", m.StatusEndpoint+"?stream_id="+url.QueryEscape(push.ID), manage, nil).json(t, &status)
	if status.ID != push.ID || status.Status != "enabled" {
		t.Fatalf("status %+v, want enabled", status)
	}

	// An update (PATCH) changes the members it names and keeps the others.
	c = ssfHTTP(t, "PATCH", m.ConfigurationEndpoint, manage, map[string]any{"stream_id": push.ID, "description": "acme's stream"})
	var updated ssfStream
	if c.code != http.StatusOK {
		t.Fatalf("update the stream: %d %s", c.code, c.body)
	}
	c.json(t, &updated)
	if updated.Description != "acme's stream" || updated.Delivery.EndpointURL != push.Delivery.EndpointURL ||
		!slices.Equal(updated.EventsDelivered, push.EventsDelivered) {
		t.Fatalf("updated stream %s", c.body)
	}

	// Paused, the stream holds the events; enabled again, it delivers them.
	setStatus := func(st string) {
		t.Helper()
		c := ssfHTTP(t, "POST", m.StatusEndpoint, manage, map[string]any{"stream_id": push.ID, "status": st, "reason": "maintenance"})
		var got struct{ Status string }
		if c.code != http.StatusOK {
			t.Fatalf("set status %s: %d %s", st, c.code, c.body)
		}
		c.json(t, &got)
		ssfHTTP(t, "GET", m.StatusEndpoint+"?stream_id="+url.QueryEscape(push.ID), read, nil).json(t, &status)
		if got.Status != st || status.Status != st {
			t.Fatalf("set status %s: answered %s, then read %s", st, got.Status, status.Status)
		}
	}
	setStatus("paused")
	held := d.login("dave")
	heldTxn := d.revoke("session", held.ID, "while paused")
	setStatus("enabled")
	checkSessionRevoked(t, r.waitSET(heldTxn), d.issuer, rp.ID, map[string]any{"format": "complex",
		"session": map[string]any{"format": "opaque", "id": held.ID}}, "while paused")

	// Verification over push echoes the state asked for.
	state := "push-" + randomSecret(t)
	if code := r.verify(m.VerificationEndpoint, manage, push.ID, state); code != http.StatusNoContent {
		t.Fatalf("verification request: %d, want 204", code)
	}
	v := r.waitVerification(state)
	if v.Via != "push" || v.Claims["sub_id"].(map[string]any)["format"] != "opaque" || v.Claims["sub_id"].(map[string]any)["id"] != push.ID {
		t.Errorf("verification SET %+v: want pushed, sub_id opaque with the stream id", v)
	}

	// A session revocation and a subject revocation arrive as CAEP
	// session-revoked SETs; a key and a token revocation, which no event
	// fits, are not sent: the pushes are in order, so each would have
	// arrived before the subject's.
	sessionTxn := d.revoke("session", user.ID, "stolen laptop")
	got := r.waitSET(sessionTxn)
	wantSubject := map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": user.ID}}
	checkSessionRevoked(t, got, d.issuer, rp.ID, wantSubject, "stolen laptop")
	keyTxn := d.revoke("key", "ssf-e2e-made-up-kid", "test")
	tokenTxn := d.revoke("token", tokenJTI(t, user.Access), "test")
	subjectTxn := d.revoke("subject", "bob", "account compromised")
	got = r.waitSET(subjectTxn)
	checkSessionRevoked(t, got, d.issuer, rp.ID, map[string]any{"format": "iss_sub", "iss": d.issuer, "sub": "bob"}, "account compromised")
	for _, s := range r.received(nil).Sets {
		if txn := s.Claims["txn"]; txn == keyTxn || txn == tokenTxn {
			t.Errorf("a revocation no event fits was sent: %+v", s)
		}
	}

	// Subjects: with default_subjects ALL, a removed subject's events are
	// not sent (the pushes are in order: frank's would have arrived before
	// erin's), and once added again they are.
	frank := map[string]any{"format": "iss_sub", "iss": d.issuer, "sub": "frank"}
	for name, tc := range map[string]struct {
		token string
		code  int
	}{"read-only token": {read, 403}, "another receiver": {otherManage, 404}} {
		if c := ssfHTTP(t, "POST", m.RemoveSubjectEndpoint, tc.token, map[string]any{"stream_id": push.ID, "subject": frank}); c.code != tc.code {
			t.Errorf("remove a subject with a %s: %d %s, want %d", name, c.code, c.body, tc.code)
		}
	}
	if c := ssfHTTP(t, "POST", m.RemoveSubjectEndpoint, manage, map[string]any{"stream_id": push.ID, "subject": frank}); c.code != http.StatusNoContent {
		t.Fatalf("remove subject frank: %d %s, want 204", c.code, c.body)
	}
	frankTxn := d.revoke("subject", "frank", "test")
	r.waitSET(d.revoke("subject", "erin", "test"))
	for _, s := range r.received(nil).Sets {
		if s.Claims["txn"] == frankTxn {
			t.Errorf("a removed subject's revocation was sent: %+v", s)
		}
	}
	if c := ssfHTTP(t, "POST", m.AddSubjectEndpoint, manage, map[string]any{"stream_id": push.ID, "subject": frank}); c.code != http.StatusOK {
		t.Fatalf("add subject frank: %d %s, want 200", c.code, c.body)
	}
	checkSessionRevoked(t, r.waitSET(d.revoke("subject", "frank", "added again")), d.issuer, rp.ID, frank, "added again")

	// A poll stream: verification, then RFC 8936's three kinds of request.
	c = ssfHTTP(t, "POST", m.ConfigurationEndpoint, manage, map[string]any{"delivery": map[string]any{"method": ssfPoll}})
	if c.code != http.StatusCreated {
		t.Fatalf("create the poll stream: %d %s", c.code, c.body)
	}
	var poll ssfStream
	c.json(t, &poll)
	if poll.Delivery.Method != ssfPoll || poll.Delivery.EndpointURL != d.issuer+"/ssf/poll/"+url.PathEscape(poll.ID) {
		t.Fatalf("poll stream delivery %+v, want the transmitter's poll endpoint", poll.Delivery)
	}
	if c := ssfHTTP(t, "POST", poll.Delivery.EndpointURL, otherManage, map[string]any{"returnImmediately": true}); c.code != http.StatusNotFound {
		t.Errorf("another receiver polls the stream: %d %s, want 404", c.code, c.body)
	}
	pollState := "poll-" + randomSecret(t)
	if code := r.verify(m.VerificationEndpoint, manage, poll.ID, pollState); code != http.StatusNoContent {
		t.Fatalf("verification request on the poll stream: %d, want 204", code)
	}
	// Poll only: without returnImmediately the transmitter answers once
	// it has a SET (a long poll); SETs not acknowledged are not sent
	// again before their acknowledgement is overdue.
	acked := map[string]bool{}
	verificationJTI := pollFor(t, r, poll.Delivery.EndpointURL, manage, nil, func(s ssfRecord) bool {
		return s.Type == ssfVerification && s.Event["state"] == pollState
	}).JTI
	// Poll and acknowledge: the verification is acknowledged, and a
	// session revocation made since arrives.
	second := d.login("carol")
	secondTxn := d.revoke("session", second.ID, "")
	got = pollFor(t, r, poll.Delivery.EndpointURL, manage, []string{verificationJTI}, func(s ssfRecord) bool {
		return s.Claims["txn"] == secondTxn
	})
	acked[verificationJTI] = true
	checkSessionRevoked(t, got, d.issuer, rp.ID, map[string]any{"format": "complex",
		"session": map[string]any{"format": "opaque", "id": second.ID}}, "The session was revoked.")
	// Acknowledge only: every SET polled and not yet acknowledged.
	var rest []string
	for _, s := range r.received(nil).Sets {
		if s.Via == "poll" && !acked[s.JTI] {
			rest = append(rest, s.JTI)
		}
	}
	ans := r.poll(poll.Delivery.EndpointURL, manage, map[string]any{"maxEvents": 0, "returnImmediately": true, "ack": rest})
	if len(ans.Sets) != 0 {
		t.Errorf("acknowledge only (maxEvents 0): %d SETs returned", len(ans.Sets))
	}
	ans = r.poll(poll.Delivery.EndpointURL, manage, map[string]any{"returnImmediately": true})
	if len(ans.Sets) != 0 || ans.MoreAvailable {
		t.Errorf("after every SET was acknowledged: %+v, want none", ans)
	}

	// Delete both streams.
	for _, id := range []string{push.ID, poll.ID} {
		target := m.ConfigurationEndpoint + "?stream_id=" + url.QueryEscape(id)
		if c := ssfHTTP(t, "DELETE", target, manage, nil); c.code != http.StatusNoContent {
			t.Errorf("delete stream %s: %d %s, want 204", id, c.code, c.body)
		}
		if c := ssfHTTP(t, "GET", target, manage, nil); c.code != http.StatusNotFound {
			t.Errorf("read deleted stream %s: %d %s, want 404", id, c.code, c.body)
		}
	}

	all := r.checkNoViolations()
	if len(all.Sets) < 4 {
		t.Errorf("the receiver got %d SETs, want at least 4", len(all.Sets))
	}
}

// pollFor polls endpoint through the receiver, acknowledging ack with the
// first request, until a SET that found accepts arrives, and returns it.
// Each request is a long poll: it is answered once the transmitter
// has a SET, or after its wait.
func pollFor(t *testing.T, r *ssfReceiver, endpoint, token string, ack []string, found func(ssfRecord) bool) ssfRecord {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		req := map[string]any{"maxEvents": 10}
		if len(ack) > 0 {
			req["ack"], ack = ack, nil
		}
		for jti, s := range r.poll(endpoint, token, req).Sets {
			if found(s) {
				s.JTI = jti
				return s
			}
		}
	}
	t.Fatalf("no SET the test waits for was polled from %s in 40s", endpoint)
	return ssfRecord{}
}

// checkSessionRevoked checks a session-revoked SET from iss for aud about
// subject, with reason (English).
func checkSessionRevoked(t *testing.T, s ssfRecord, iss, aud string, subject map[string]any, reason string) {
	t.Helper()
	if s.Type != ssfSessionRevoked {
		t.Fatalf("SET type %s, want session-revoked: %+v", s.Type, s)
	}
	if len(s.Violations) > 0 {
		t.Errorf("SET %s breaks: %q", s.JTI, s.Violations)
	}
	if s.Claims["iss"] != iss || mustJSON(t, s.Claims["aud"]) != mustJSON(t, aud) && mustJSON(t, s.Claims["aud"]) != mustJSON(t, []string{aud}) {
		t.Errorf("SET iss %v aud %v, want %s and %s", s.Claims["iss"], s.Claims["aud"], iss, aud)
	}
	if got := mustJSON(t, s.Claims["sub_id"]); got != mustJSON(t, subject) {
		t.Errorf("SET sub_id %s, want %s", got, mustJSON(t, subject))
	}
	if got := mustJSON(t, s.Event["reason_admin"]); got != mustJSON(t, map[string]string{"en": reason}) {
		t.Errorf("SET reason_admin %s, want {\"en\": %q}", got, reason)
	}
	if s.Header["alg"] != "RS256" || s.Header["typ"] != "secevent+jwt" {
		t.Errorf("SET header %v", s.Header)
	}
}

// startHeraldPair starts two deployments, A and B, as the README's
// walkthrough does: B trusts A's tokens and SETs, and B's admin created a
// push stream at A towards B's push endpoint. B listens on a fixed
// address, so that it can be restarted where A pushes.
func startHeraldPair(t *testing.T) (a, b *devHerald) {
	t.Helper()
	a = startHeraldDev(t, "herald-a")
	receiverAtA := a.createClient("herald-b", "ssf.manage ssf.read")
	trust := filepath.Join(t.TempDir(), "trust.json")
	if err := os.WriteFile(trust, []byte(mustJSON(t, map[string]any{"issuers": []map[string]any{{
		"issuer": a.issuer, "tokens": true, "ssf": true, "client_id": receiverAtA.ID, "push_credential": "herald-a-ssf",
	}}})), 0o600); err != nil {
		t.Fatal(err)
	}
	b = startHeraldDev(t, "herald-b", "--trust-issuers-file", trust, "--http", freeAddr(t))
	var cred issuer.Credential
	b.heraldJSON(&cred, "credential create", "herald-a-ssf", "--scopes", "signals")
	if cred.Token == "" {
		t.Fatalf("credential create: %+v, want its secret", cred)
	}

	// B's admin creates the stream at A.
	var meta ssfMetadata
	getJSON(t, a.issuer+"/.well-known/ssf-configuration", &meta)
	token := a.clientToken(receiverAtA, "ssf.manage")
	c := ssfHTTP(t, "POST", meta.ConfigurationEndpoint, token, map[string]any{"delivery": map[string]any{
		"method": ssfPush, "endpoint_url": b.issuer + "/ssf/push", "authorization_header": "Bearer " + cred.Token}})
	if c.code != http.StatusCreated {
		t.Fatalf("create the stream at A: %d %s", c.code, c.body)
	}
	return a, b
}

// acceptsFrom returns a check that d's verifier accepts the access token
// of a session of a.
func (d *devHerald) acceptsFrom(a *devHerald) func(session) error {
	return func(s session) error {
		if code, www := tryVerifyWWW(d.verifier, s.Access); code != http.StatusOK {
			return fmt.Errorf("%s's verifier answers %d %s to %s's token of session %s, want 200", d.proc.name, code, www, a.proc.name, s.ID)
		}
		return nil
	}
}

// refusesFrom returns a check that d's verifier refuses the access token
// of a session of a as revoked.
func (d *devHerald) refusesFrom(a *devHerald) func(session) error {
	return func(s session) error {
		if code, www := tryVerifyWWW(d.verifier, s.Access); code != http.StatusUnauthorized || !strings.Contains(www, `error_description="revoked"`) {
			return fmt.Errorf("%s's verifier answers %d %s to %s's token of session %s, want 401 revoked", d.proc.name, code, www, a.proc.name, s.ID)
		}
		return nil
	}
}

// TestSSF_HeraldToHerald_ReceiverAway: while B is down, A's push of a
// session revocation fails and A keeps the SET (its stream shows the
// error); once B is back, on the same address and data, A delivers it
// and B's verifier refuses the session's token.
func TestSSF_HeraldToHerald_ReceiverAway(t *testing.T) {
	a, b := startHeraldPair(t)
	alice := a.login("alice")
	bustest.WaitFor(t, 20*time.Second, func() error { return b.acceptsFrom(a)(alice) })

	b.proc.kill()
	a.revoke("session", alice.ID, "stolen laptop")
	// A's push fails while B is away; there is no event to wait on but
	// the stream's last error.
	bustest.WaitFor(t, 20*time.Second, func() error {
		var info []struct {
			LastError string `json:"last_error"`
			Lag       uint64 `json:"lag"`
		}
		a.heraldJSON(&info, "ssf streams", "--json")
		if len(info) != 1 || info[0].LastError == "" || info[0].Lag == 0 {
			return fmt.Errorf("A's stream %+v: want a push error and the SET still owed", info)
		}
		return nil
	})

	b.restart()
	bustest.WaitFor(t, 30*time.Second, func() error { return b.refusesFrom(a)(alice) })
}

// TestSSF_HeraldToHerald: two complete deployments, A and B, each a
// 'herald dev' with its own NATS and data. B trusts A's tokens and
// receives A's Shared Signals: B's admin registers B as a receiver at A
// (a client of A with ssf.manage) and creates a push stream at A towards
// B's push endpoint, authenticated with a push credential of B. A user
// signed in at A calls a service behind B's verifier with A's token;
// when A revokes the session, B's verifier refuses it, while the same
// user's other session at A stays accepted. When A revokes a subject, B
// refuses that subject's tokens of A, and keeps accepting its own tokens
// for a subject of the same name.
func TestSSF_HeraldToHerald(t *testing.T) {
	a, b := startHeraldPair(t)
	accepted, refused := b.acceptsFrom(a), b.refusesFrom(a)

	laptop, phone, bob := a.login("alice"), a.login("alice"), a.login("bob")
	// B's verifier learns A's keys from B's bus, soon after B's issuer
	// fetched them.
	bustest.WaitFor(t, 20*time.Second, func() error { return accepted(laptop) })
	for _, s := range []session{phone, bob} {
		if err := accepted(s); err != nil {
			t.Fatal(err)
		}
	}

	// Across deployments there is no event to wait on: B's verifier is
	// asked until it refuses, within a deadline.
	a.revoke("session", laptop.ID, "stolen laptop")
	bustest.WaitFor(t, 20*time.Second, func() error { return refused(laptop) })
	if err := accepted(phone); err != nil {
		t.Fatalf("after the laptop's session was revoked at A: %v", err)
	}

	bobAtB := b.login("bob")
	a.revoke("subject", "bob", "account compromised")
	bustest.WaitFor(t, 20*time.Second, func() error { return refused(bob) })
	if err := accepted(phone); err != nil {
		t.Fatalf("after bob was revoked at A: %v", err)
	}
	if code, www := tryVerifyWWW(b.verifier, bobAtB.Access); code != http.StatusOK {
		t.Fatalf("B's own token for its bob: %d %s, want 200: A's revocation is limited to A's tokens", code, www)
	}
}

// TestSSF_HeraldToHerald_Poll: B polls A instead of A pushing to B. B's
// admin registers B as a receiver at A and creates a poll stream; B polls
// it with its client credentials at A, getting A's access tokens from the
// token endpoint of A's OpenID configuration. A's tokens live 6 seconds,
// so B obtains new ones while the test runs. A session A revokes is
// refused on B's verifier, the same user's other session stays accepted,
// and B never logs its secret.
func TestSSF_HeraldToHerald_Poll(t *testing.T) {
	a := startHeraldDev(t, "herald-a", "--access-ttl", "6s")
	receiverAtA := a.createClient("herald-b", "ssf.manage ssf.read")
	var meta ssfMetadata
	getJSON(t, a.issuer+"/.well-known/ssf-configuration", &meta)
	c := ssfHTTP(t, "POST", meta.ConfigurationEndpoint, a.clientToken(receiverAtA, "ssf.manage"),
		map[string]any{"delivery": map[string]any{"method": ssfPoll}})
	var stream ssfStream
	c.json(t, &stream)
	if c.code != http.StatusCreated || stream.Delivery.Method != ssfPoll || stream.Delivery.EndpointURL == "" {
		t.Fatalf("create a poll stream at A: %d %s", c.code, c.body)
	}

	dir := t.TempDir()
	trust, secret := filepath.Join(dir, "trust.json"), filepath.Join(dir, "herald-a.secret")
	if err := os.WriteFile(trust, []byte(mustJSON(t, map[string]any{"issuers": []map[string]any{{
		"issuer": a.issuer, "tokens": true, "ssf": true, "client_id": receiverAtA.ID,
	}}})), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte(receiverAtA.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startHeraldDev(t, "herald-b", "--trust-issuers-file", trust, "--log-level", "debug",
		"--ssf-poll", stream.Delivery.EndpointURL, "--ssf-poll-client-id", receiverAtA.ID, "--ssf-poll-client-secret-file", secret)
	accepted, refused := b.acceptsFrom(a), b.refusesFrom(a)

	// A's tokens here outlive the test, A's client credentials tokens not.
	login := func(sub string) session {
		var s session
		a.heraldJSON(&s, "token", "--json", "--ttl", "10m", sub)
		return s
	}
	laptop, phone := login("alice"), login("alice")
	bustest.WaitFor(t, 20*time.Second, func() error { return accepted(laptop) })
	a.revoke("session", laptop.ID, "stolen laptop")
	bustest.WaitFor(t, 20*time.Second, func() error { return refused(laptop) })
	if err := accepted(phone); err != nil {
		t.Fatalf("after the laptop's session was revoked at A: %v", err)
	}

	// B obtained a token, and another once the first was due for renewal.
	b.proc.waitLog(regexp.MustCompile(`(?s)msg="SSF poll token obtained".*msg="SSF poll token obtained"`), 30*time.Second)
	a.revoke("session", phone.ID, "stolen phone")
	bustest.WaitFor(t, 20*time.Second, func() error { return refused(phone) })
	logs := b.proc.logs.String()
	if !strings.Contains(logs, "token_url="+a.issuer+"/oauth2/token") {
		t.Errorf("B's logs do not show A's token endpoint:\n%s", lastLines(logs, 40))
	}
	if strings.Contains(logs, receiverAtA.Secret) {
		t.Errorf("B's logs show its client secret at A")
	}
}

// tryVerifyWWW asks a verifier about a token: the status code and the
// WWW-Authenticate header, or 0 if the verifier does not answer.
func tryVerifyWWW(url, token string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/verify", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// TestSSF_PushRetriesAndPausesOnRefusal: a receiver that answers 503 gets
// the same SET again, byte for byte, until it accepts it; a receiver that
// answers 401 has its stream paused, shown to the operator with the
// reason by 'herald ssf streams', the SET held; 'herald ssf streams
// enable' delivers it.
func TestSSF_PushRetriesAndPausesOnRefusal(t *testing.T) {
	d := startHeraldDev(t, "herald")
	var m ssfMetadata
	getJSON(t, d.issuer+"/.well-known/ssf-configuration", &m)
	rp := d.createClient("acme-saas", "ssf.manage ssf.read")
	manage := d.clientToken(rp, "ssf.manage ssf.read")
	pushAuth := "Bearer " + randomSecret(t)
	r := startSSFReceiver(t, d.issuer, rp.ID, pushAuth)
	c := ssfHTTP(t, "POST", m.ConfigurationEndpoint, manage, map[string]any{
		"delivery": map[string]any{"method": ssfPush, "endpoint_url": r.url + "/push", "authorization_header": pushAuth}})
	if c.code != http.StatusCreated {
		t.Fatalf("create the push stream: %d %s", c.code, c.body)
	}
	var stream ssfStream
	c.json(t, &stream)

	// Down, then up: the SET is retried with backoff, unchanged.
	r.answer(http.StatusServiceUnavailable, 2)
	first := d.login("alice")
	got := r.waitSET(d.revoke("session", first.ID, "stolen laptop"))
	if attempts := r.received(nil).attempts(got.Token); !slices.Equal(attempts, []int{503, 503, 202}) {
		t.Fatalf("pushes of the SET answered %v, want [503 503 202]: the same bytes until accepted", attempts)
	}

	// Refused: paused, held, shown to the operator.
	r.answer(http.StatusUnauthorized, 1)
	second := d.login("bob")
	secondTxn := d.revoke("session", second.ID, "stolen phone")
	var info []struct {
		ID        string `json:"stream_id"`
		Status    string `json:"status"`
		Reason    string `json:"reason"`
		LastError string `json:"last_error"`
	}
	bustest.WaitFor(t, 20*time.Second, func() error {
		d.heraldJSON(&info, "ssf streams", "--json")
		if len(info) != 1 || info[0].ID != stream.ID || info[0].Status != "paused" || info[0].Reason == "" || info[0].LastError == "" {
			return fmt.Errorf("herald ssf streams: %+v, want the stream paused with a reason and its last error", info)
		}
		return nil
	})
	if table := d.herald("ssf streams"); !strings.Contains(table, stream.ID) || !strings.Contains(table, "paused (") {
		t.Errorf("herald ssf streams:\n%s\nwant the stream, paused with its reason", table)
	}
	var status struct{ Status, Reason string }
	ssfHTTP(t, "GET", m.StatusEndpoint+"?stream_id="+url.QueryEscape(stream.ID), manage, nil).json(t, &status)
	if status.Status != "paused" {
		t.Errorf("the receiver reads its stream's status %+v, want paused", status)
	}
	for _, s := range r.received(nil).Sets {
		if s.Claims["txn"] == secondTxn {
			t.Fatalf("the refused SET was delivered while the stream was paused: %+v", s)
		}
	}

	if out := d.herald("ssf streams", "enable", stream.ID); !strings.Contains(out, "enabled") {
		t.Errorf("herald ssf streams enable: %q", out)
	}
	got = r.waitSET(secondTxn)
	if attempts := r.received(nil).attempts(got.Token); !slices.Equal(attempts, []int{401, 202}) {
		t.Errorf("pushes of the held SET answered %v, want [401 202]", attempts)
	}
	r.checkNoViolations()
}
