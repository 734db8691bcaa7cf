package issuer_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/issuer"
)

// ssfClient registers a client with scope and returns it with an access
// token of the client credentials grant.
func ssfClient(t *testing.T, svc *issuer.Service, name, scope string) (issuer.Client, string) {
	t.Helper()
	code, raw := call(t, "POST", svc.URL()+"/v1/clients", adminToken, issuer.ClientRequest{Name: name, Scope: scope})
	var cl issuer.Client
	if code != http.StatusCreated || json.Unmarshal(raw, &cl) != nil {
		t.Fatalf("register client %s: %d %s", name, code, raw)
	}
	code, body, _ := form(t, svc.URL()+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, cl.ID, cl.Secret)
	tok, _ := body["access_token"].(string)
	if code != http.StatusOK || tok == "" || body["scope"] != scope {
		t.Fatalf("client credentials for %s: %d %v", name, code, body)
	}
	return cl, tok
}

// ssfCall sends a request to the SSF API with a bearer token and returns
// the status, the headers and the body.
func ssfCall(t *testing.T, method, endpoint, token, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// wantSSFError checks an SSF API answer is the JSON error code with
// status, not to be cached.
func wantSSFError(t *testing.T, what string, code int, h http.Header, body []byte, status int, errCode string) {
	t.Helper()
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if code != status || json.Unmarshal(body, &e) != nil || e.Error != errCode || e.Description == "" {
		t.Errorf("%s: %d %s, want %d %s", what, code, body, status, errCode)
	}
	if cc := h.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", what, cc)
	}
}

// waitTransmitter waits until the transmitter of the issuer at base has
// set up the bus and answers tok's calls.
func waitTransmitter(t *testing.T, base, tok string) {
	t.Helper()
	bustest.WaitFor(t, 30*time.Second, func() error {
		if code, _, body := ssfCall(t, "GET", base+"/ssf/stream", tok, ""); code != http.StatusOK {
			return fmt.Errorf("list streams: %d %s", code, body)
		}
		return nil
	})
}

func TestSSF_Discovery(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())

	code, h, body := ssfCall(t, "GET", svc.URL()+"/.well-known/ssf-configuration", "", "")
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("configuration: %d %v %s", code, h, body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	iss := svc.IssuerURL()
	want := map[string]any{
		"spec_version":               "1_0",
		"issuer":                     iss,
		"jwks_uri":                   iss + "/ssf/jwks.json",
		"delivery_methods_supported": []any{"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"},
		"configuration_endpoint":     iss + "/ssf/stream",
		"status_endpoint":            iss + "/ssf/status",
		"add_subject_endpoint":       iss + "/ssf/subjects:add",
		"remove_subject_endpoint":    iss + "/ssf/subjects:remove",
		"verification_endpoint":      iss + "/ssf/verify",
		"authorization_schemes":      []any{map[string]any{"spec_urn": "urn:ietf:rfc:6749"}},
		"default_subjects":           "ALL",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("configuration\n got %v\nwant %v", got, want)
	}

	code, h, body = ssfCall(t, "GET", svc.URL()+"/ssf/jwks.json", "", "")
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("jwks: %d %v %s", code, h, body)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s: %v, want one key", body, err)
	}
	k := set.Keys[0]
	if k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" || k["kid"] == "" || k["d"] != "" {
		t.Errorf("jwks key %v: want a public RSA RS256 signing key with a kid", k)
	}
	n, err := base64.RawURLEncoding.DecodeString(k["n"])
	if err != nil || new(big.Int).SetBytes(n).BitLen() < 2048 {
		t.Errorf("jwks modulus: %d bits (%v), want at least 2048", new(big.Int).SetBytes(n).BitLen(), err)
	}
	// The kid is the key's RFC 7638 thumbprint.
	sum := sha256.Sum256([]byte(`{"e":"` + k["e"] + `","kty":"RSA","n":"` + k["n"] + `"}`))
	if thumb := base64.RawURLEncoding.EncodeToString(sum[:]); k["kid"] != thumb {
		t.Errorf("kid %q, want the RFC 7638 thumbprint %q", k["kid"], thumb)
	}
	// The token keys are not the transmitter's.
	_, _, tokenKeys := ssfCall(t, "GET", svc.URL()+"/.well-known/jwks.json", "", "")
	if strings.Contains(string(tokenKeys), k["kid"]) {
		t.Errorf("the token key set holds the transmitter key %s", k["kid"])
	}
}

func TestSSF_OffWithoutHTTPS(t *testing.T) {
	s := bustest.RunServer(t)
	for name, cfg := range map[string]issuer.Config{
		"http issuer URL": {IssuerURL: "http://issuer.example"},
		"turned off":      {DisableSSF: true},
	} {
		t.Run(name, func(t *testing.T) {
			svc, _ := runIssuerOn(t, bustest.Connect(t, s), cfg)
			for _, path := range []string{"/.well-known/ssf-configuration", "/ssf/jwks.json", "/ssf/stream"} {
				if code, _, body := ssfCall(t, "GET", svc.URL()+path, "", ""); code != http.StatusNotFound {
					t.Errorf("GET %s with SSF off: %d %s, want 404", path, code, body)
				}
			}
			if code, body := call(t, "GET", svc.URL()+"/v1/ssf/streams", adminToken, nil); code != http.StatusNotFound {
				t.Errorf("GET /v1/ssf/streams with SSF off: %d %s, want 404", code, body)
			}
		})
	}
}

func TestSSF_Authentication(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	rx, manage := ssfClient(t, svc, "receiver-x", "ssf.manage ssf.read")
	_, read := ssfClient(t, svc, "reader", "ssf.read")
	_, other := ssfClient(t, svc, "backend", "orders")
	stream := svc.URL() + "/ssf/stream"

	code, h, body := ssfCall(t, "GET", stream, "", "")
	wantSSFError(t, "no token", code, h, body, http.StatusUnauthorized, "unauthorized")
	if got := h.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") || strings.Contains(got, "error=") {
		t.Errorf("no token: WWW-Authenticate %q, want a Bearer challenge without an error", got)
	}
	code, h, body = ssfCall(t, "GET", stream, "not-a-token", "")
	wantSSFError(t, "bad token", code, h, body, http.StatusUnauthorized, "invalid_token")
	if got := h.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Errorf("bad token: WWW-Authenticate %q", got)
	}
	code, h, body = ssfCall(t, "GET", stream, adminToken, "")
	wantSSFError(t, "admin token", code, h, body, http.StatusUnauthorized, "invalid_token")

	code, h, body = ssfCall(t, "GET", stream+"?access_token="+url.QueryEscape(manage), "", "")
	wantSSFError(t, "token in the query", code, h, body, http.StatusBadRequest, "invalid_request")

	code, h, body = ssfCall(t, "POST", stream, read, `{}`)
	wantSSFError(t, "read token creating", code, h, body, http.StatusForbidden, "insufficient_scope")
	if got := h.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
		t.Errorf("read token creating: WWW-Authenticate %q", got)
	}
	code, h, body = ssfCall(t, "GET", stream, other, "")
	wantSSFError(t, "token without ssf scopes", code, h, body, http.StatusForbidden, "insufficient_scope")

	// A session's token, even one naming the client as its subject and
	// with its scopes, is not the receiver's own.
	sess := createSession(t, svc, issuer.SessionRequest{Subject: rx.ID, ClientID: rx.ID, Scope: "ssf.manage ssf.read"})
	code, h, body = ssfCall(t, "GET", stream, sess.AccessToken, "")
	wantSSFError(t, "session token", code, h, body, http.StatusUnauthorized, "invalid_token")

	// A revoked client's tokens stop working at once.
	if code, body := call(t, "DELETE", svc.URL()+"/v1/clients/"+rx.ID, adminToken, nil); code != http.StatusOK {
		t.Fatalf("delete client: %d %s", code, body)
	}
	code, h, body = ssfCall(t, "GET", stream, manage, "")
	wantSSFError(t, "revoked client", code, h, body, http.StatusUnauthorized, "invalid_token")
}

// TestSSF_Receivers: each receiver sees and changes only its own streams;
// the operator sees, pauses and deletes any.
func TestSSF_Receivers(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	_, x := ssfClient(t, svc, "receiver-x", "ssf.manage ssf.read")
	y, yTok := ssfClient(t, svc, "receiver-y", "ssf.manage")
	base := svc.URL()

	waitTransmitter(t, base, yTok)
	code, h, body := ssfCall(t, "POST", base+"/ssf/stream", yTok, `{"description":"y's"}`)
	var st struct {
		ID       string   `json:"stream_id"`
		Iss      string   `json:"iss"`
		Aud      []string `json:"aud"`
		Delivery struct {
			Method      string `json:"method"`
			EndpointURL string `json:"endpoint_url"`
		} `json:"delivery"`
	}
	if code != http.StatusCreated || json.Unmarshal(body, &st) != nil || st.ID == "" {
		t.Fatalf("create: %d %s", code, body)
	}
	if h.Get("Cache-Control") != "no-store" || st.Iss != svc.IssuerURL() || !reflect.DeepEqual(st.Aud, []string{y.ID}) ||
		st.Delivery.Method != "urn:ietf:rfc:8936" || st.Delivery.EndpointURL != svc.IssuerURL()+"/ssf/poll/"+st.ID {
		t.Errorf("created stream %s (Cache-Control %q): want iss, aud the receiver, a poll endpoint of this issuer", body, h.Get("Cache-Control"))
	}

	id := url.QueryEscape(st.ID)
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/ssf/stream?stream_id=" + id, ""},
		{"DELETE", "/ssf/stream?stream_id=" + id, ""},
		{"PATCH", "/ssf/stream", `{"stream_id":"` + st.ID + `","description":"mine now"}`},
		{"GET", "/ssf/status?stream_id=" + id, ""},
		{"POST", "/ssf/status", `{"stream_id":"` + st.ID + `","status":"disabled"}`},
		{"POST", "/ssf/verify", `{"stream_id":"` + st.ID + `"}`},
		{"POST", "/ssf/poll/" + st.ID, `{"returnImmediately":true}`},
	} {
		code, h, body := ssfCall(t, c.method, base+c.path, x, c.body)
		wantSSFError(t, "another receiver's "+c.method+" "+c.path, code, h, body, http.StatusNotFound, "not_found")
	}
	if code, _, body := ssfCall(t, "GET", base+"/ssf/stream", x, ""); code != http.StatusOK || string(body) != "[]\n" {
		t.Errorf("x's list: %d %s, want []", code, body)
	}
	if code, _, body := ssfCall(t, "GET", base+"/ssf/status?stream_id="+id, yTok, ""); code != http.StatusOK ||
		!strings.Contains(string(body), `"status":"enabled"`) {
		t.Errorf("y's status: %d %s", code, body)
	}

	// The operator's view.
	code, raw := call(t, "GET", base+"/v1/ssf/streams", adminToken, nil)
	var list []struct {
		ID       string `json:"stream_id"`
		Receiver string `json:"receiver"`
		Method   string `json:"method"`
		Status   string `json:"status"`
		Reason   string `json:"reason"`
	}
	if code != http.StatusOK || json.Unmarshal(raw, &list) != nil || len(list) != 1 ||
		list[0].ID != st.ID || list[0].Receiver != y.ID || list[0].Method != "urn:ietf:rfc:8936" || list[0].Status != "enabled" {
		t.Fatalf("operator's list: %d %s", code, raw)
	}
	for _, bad := range []string{`{"status":"stopped"}`, `{"status":"paused","extra":1}`, `{}`} {
		if code, body := call(t, "POST", base+"/v1/ssf/streams/"+st.ID+"/status", adminToken, bad); code != http.StatusBadRequest {
			t.Errorf("operator status %s: %d %s, want 400", bad, code, body)
		}
	}
	if code, body := call(t, "POST", base+"/v1/ssf/streams/nope/status", adminToken, issuer.SSFStatusRequest{Status: "paused"}); code != http.StatusNotFound {
		t.Errorf("operator pause of an unknown stream: %d %s, want 404", code, body)
	}
	code, raw = call(t, "POST", base+"/v1/ssf/streams/"+st.ID+"/status", adminToken, issuer.SSFStatusRequest{Status: "paused", Reason: "maintenance"})
	if code != http.StatusOK || !strings.Contains(string(raw), `"status":"paused"`) {
		t.Fatalf("operator pause: %d %s", code, raw)
	}
	if code, _, body := ssfCall(t, "GET", base+"/ssf/status?stream_id="+id, yTok, ""); code != http.StatusOK ||
		!strings.Contains(string(body), `"status":"paused"`) || !strings.Contains(string(body), `"reason":"maintenance"`) {
		t.Errorf("y's status after the operator paused it: %d %s", code, body)
	}
	if code, body := call(t, "DELETE", base+"/v1/ssf/streams/"+st.ID, adminToken, nil); code != http.StatusNoContent {
		t.Fatalf("operator delete: %d %s", code, body)
	}
	if code, _, body := ssfCall(t, "GET", base+"/ssf/stream?stream_id="+id, yTok, ""); code != http.StatusNotFound {
		t.Errorf("y's stream after the operator deleted it: %d %s, want 404", code, body)
	}
	if code, body := call(t, "GET", base+"/v1/ssf/streams", adminToken, nil); code != http.StatusOK || string(body) != "[]\n" {
		t.Errorf("operator's list after delete: %d %s, want []", code, body)
	}

	// The operator's changes are audited; the refused ones are not.
	code, raw = call(t, "GET", base+"/v1/audit?actor=admin", adminToken, nil)
	var audit struct {
		Audit []issuer.AuditRecord `json:"audit"`
	}
	if code != http.StatusOK || json.Unmarshal(raw, &audit) != nil {
		t.Fatalf("audit: %d %s", code, raw)
	}
	var got []string
	for _, a := range audit.Audit {
		if a.Type == "admin.ssf" {
			got = append(got, a.Action+" "+a.Value+" "+a.Reason)
		}
	}
	if want := []string{"ssf.delete " + st.ID + " ", "ssf.paused " + st.ID + " maintenance"}; !reflect.DeepEqual(got, want) {
		t.Errorf("audited SSF actions %q, want %q (newest first)", got, want)
	}
}

// TestSSF_ExternalTokenRefused: a trusted provider's access token that
// names a registered client as its subject and client, with the SSF
// scopes, verifies as the provider's, but is not a receiver's token of
// this issuer.
func TestSSF_ExternalTokenRefused(t *testing.T) {
	idp := federationtest.NewIdP(t)
	s := bustest.RunServer(t)
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{
		Trust: []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}})
	rx, own := ssfClient(t, svc, "receiver-x", "ssf.manage ssf.read")
	now := time.Now()
	forged := idp.Sign(t, "JWT", jwt.MapClaims{"iss": idp.URL, "sub": rx.ID, "client_id": rx.ID, "azp": rx.ID,
		"aud": idp.Audience, "scope": "ssf.manage ssf.read", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "ext-1"})
	bustest.WaitFor(t, 30*time.Second, func() error { // the issuer has fetched the provider's keys
		if in := introspectAt(t, svc, forged); !in.Active || in.Iss != idp.URL {
			return fmt.Errorf("the provider's token is not active yet: %+v", in)
		}
		return nil
	})
	waitTransmitter(t, svc.URL(), own)
	code, h, body := ssfCall(t, "GET", svc.URL()+"/ssf/stream", forged, "")
	wantSSFError(t, "a trusted provider's token", code, h, body, http.StatusUnauthorized, "invalid_token")
}
