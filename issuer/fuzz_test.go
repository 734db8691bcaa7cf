package issuer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

var update = flag.Bool("update", false, "rewrite the seed corpora in testdata/fuzz")

// sessionSeeds and revocationSeeds are request bodies a careless or
// hostile admin client might send.
var sessionSeeds = []string{
	`{"sub":"alice"}`,
	`{"sub":"alice","tenant":"acme","client_id":"web","scope":"read write","ttl":300}`,
	`{"sub":"a","ttl":"90s"}`,
	`{"sub":"a","ttl":"24h"}`,
	`{"sub":"a","ttl":-1}`,
	`{"sub":"a","ttl":"-5m"}`,
	`{"sub":"a","ttl":1e30}`,
	`{"sub":"a","ttl":18446744075}`,
	`{"sub":"a","ttl":"9223372036854775807ns"}`,
	`{"sub":""}`,
	`{"sub":"a\u0000b"}`,
	`{"sub":"a\ud800"}`,
	"{\"sub\":\"a\xffb\"}",
	`{"sub":"` + strings.Repeat("x", 257) + `"}`,
	`{"sub":"a","scope":"` + strings.Repeat("s", 1025) + `"}`,
	`{"sub":"a","extra":1}`,
	`{"sub":"a"}{}`,
	`{"SUB":"a"}`,
	`{"sub":"a","sub":"b"}`,
	`{"sub":1}`,
	`{"sub":"a","client_id":"` + strings.Repeat("[", 100) + `"}`,
	`null`, `[]`, ``, `{`, `"sub"`,
}

var revocationSeeds = []string{
	`{"kind":"session","value":"s"}`,
	`{"kind":"all"}`,
	`{"kind":"all","reason":"incident 42"}`,
	`{"kind":"token","values":["a","b"]}`,
	`{"kind":"key","value":"k","reason":"leaked"}`,
	`{"kind":"subject","value":"` + strings.Repeat("x", bus.MaxValueLen) + `"}`,
	`{"kind":"subject","value":"` + strings.Repeat("x", bus.MaxValueLen+1) + `"}`,
	`{"kind":"subject","value":"x","reason":"` + strings.Repeat("r", 1025) + `"}`,
	`{"kind":"tenant","values":[]}`,
	`{"kind":"tenant","values":null}`,
	`{"kind":"tenant","values":["a",""]}`,
	`{"kind":"client","value":"\u2028"}`,
	`{"kind":"token","value":"\ud800"}`,
	"{\"kind\":\"token\",\"value\":\"\xff\"}",
	`{"kind":"session","value":"s","kind":"all"}`,
	`{"KIND":"all"}`,
	`{"kind":"everything"}`,
	`{"kind":7}`,
	`{"kind":"all","value":""}`,
	`{"kind":"all","value":"x"}`,
	`null`, ``, `{"kind":"all"} x`,
}

// fuzzAdmin runs path's admin endpoint on body through the real handler
// of a running issuer, and checks the answer: no panic, a 2xx or a 4xx,
// never a 5xx, and JSON either way.
func fuzzAdmin(t *testing.T, h http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fuzzAdminToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 || rec.Code < 200 || (rec.Code >= 300 && rec.Code < 400) {
		t.Fatalf("POST %s %q: status %d %s, want 2xx or 4xx", path, body, rec.Code, rec.Body)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("POST %s %q: answer %q is not JSON: %v", path, body, rec.Body, err)
	}
	if rec.Code >= 400 && (out["error"] == nil || out["error_description"] == nil) {
		t.Fatalf("POST %s %q: error answer %s lacks error or error_description", path, body, rec.Body)
	}
	return rec
}

// fuzzAdminToken is the admin token openForTest gives the issuer.
const fuzzAdminToken = "fuzz-test-admin-token-32-bytes-long"

// FuzzSessionRequest feeds bodies to POST /v1/sessions. Those accepted
// create real sessions (committed and published), so an accepted body
// whose events the bus would refuse shows as a 5xx.
func FuzzSessionRequest(f *testing.F) {
	for _, s := range sessionSeeds {
		f.Add([]byte(s))
	}
	svc, _ := openForTest(f, bustest.RunServer(f), f.TempDir(), nil)
	h := newHandler(svc)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fuzzAdmin(t, h, "/v1/sessions", body)
		if rec.Code != http.StatusOK {
			return
		}
		var resp SessionResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.SessionID == "" || resp.AccessToken == "" || !strings.HasPrefix(resp.RefreshToken, "hrt_") ||
			resp.ExpiresIn < 1 || resp.ExpiresIn > int64(svc.cfg.MaxAccessTTL.Seconds()) {
			t.Fatalf("accepted %q: answer %+v", body, resp)
		}
	})
}

// FuzzRevocationRequest feeds bodies to POST /v1/revocations as a dry run
// (so the fuzzer does not revoke its own keys), and for every body the API
// accepts checks that the revocation events it would publish are valid on
// the bus: what the API takes, the verifiers take.
func FuzzRevocationRequest(f *testing.F) {
	for _, s := range revocationSeeds {
		f.Add([]byte(s))
	}
	svc, _ := openForTest(f, bustest.RunServer(f), f.TempDir(), nil)
	h := newHandler(svc)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fuzzAdmin(t, h, "/v1/revocations?dry_run=true", body)
		if rec.Code != http.StatusOK {
			return
		}
		var req RevocationRequest
		r := httptest.NewRequest("POST", "/v1/revocations", bytes.NewReader(body))
		if err := decodeBodyMax(httptest.NewRecorder(), r, &req, maxBulkBytes); err != nil {
			t.Fatalf("dry run accepted %q, decoding refuses it: %v", body, err)
		}
		kind, values, err := checkRevocation(req)
		if err != nil {
			t.Fatalf("dry run accepted %q, checkRevocation refuses it: %v", body, err)
		}
		now := svc.now()
		for _, e := range svc.revocationEvents(now, "fuzz", kind, values, req.Reason, "") {
			if _, err := bus.Encode(e); err != nil {
				t.Fatalf("accepted %q, but its event is invalid on the bus: %v", body, err)
			}
		}
	})
}

func basic(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }

// clientAuthSeeds are Authorization headers and form bodies of the token
// endpoint.
var clientAuthSeeds = [][2]string{
	{basic("cl_1:hcs_secret"), "grant_type=client_credentials"},
	{"", "grant_type=client_credentials&client_id=cl_1&client_secret=hcs_secret"},
	{"", "client_id=a&client_id=b"},
	{basic("a%20b:c%2Bd+e"), ""},
	{basic("a%zz:b"), ""},
	{basic("nocolon"), ""},
	{basic(":"), ""},
	{basic("id:sec"), "client_secret=other"},
	{"Basic !!!", ""},
	{"basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), ""},
	{"Basic  " + base64.StdEncoding.EncodeToString([]byte("a:b")) + " ", ""},
	{"Bearer hrld_x", "token=y"},
	{"Basic", ""},
	{basic("a:b\x00c\xff"), ""},
	{"", "%zz=1"},
}

// FuzzParseClientAuth feeds Authorization headers and form bodies to the
// token endpoint's client authentication (RFC 6749 section 2.3.1). None may
// panic, refusals are 400 or 401, and HTTP Basic credentials it accepts
// survive a round trip through their encoding.
func FuzzParseClientAuth(f *testing.F) {
	for _, seed := range clientAuthSeeds {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, authorization, form string) {
		r := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		if err := parseForm(httptest.NewRecorder(), r); err != nil {
			checkStatus(t, err, http.StatusBadRequest)
			return
		}
		a, err := parseClientAuth(r)
		if err != nil {
			checkStatus(t, err, http.StatusBadRequest, http.StatusUnauthorized)
			return
		}
		scheme, _, _ := strings.Cut(authorization, " ")
		if authorization == "" || !strings.EqualFold(scheme, "Basic") {
			if a.ID != r.PostForm.Get("client_id") || a.Secret != r.PostForm.Get("client_secret") {
				t.Fatalf("form credentials %q read as %+v", form, a)
			}
			return
		}
		again := httptest.NewRequest("POST", "/oauth2/token", nil)
		again.Header.Set("Authorization", basic(url.QueryEscape(a.ID)+":"+url.QueryEscape(a.Secret)))
		b, err := parseClientAuth(again)
		if err != nil || b != a {
			t.Fatalf("Basic credentials %+v from %q do not survive a round trip: %+v, %v", a, authorization, b, err)
		}
	})
}

// checkStatus fails t unless err is an API error with one of statuses.
func checkStatus(t *testing.T, err error, statuses ...int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an API error", err)
	}
	for _, s := range statuses {
		if e.Status == s {
			return
		}
	}
	t.Fatalf("error %v has status %d, want one of %v", err, e.Status, statuses)
}

// TestFuzzCorpora rewrites the committed seed corpora of this package's
// fuzz targets from the seeds above: go test -run TestFuzzCorpora -update
// ./issuer.
func TestFuzzCorpora(t *testing.T) {
	if !*update {
		t.Skip("rewrites testdata/fuzz with -update")
	}
	// quoted returns the corpus lines of []byte arguments.
	quoted := func(seeds []string) []string {
		var out []string
		for _, s := range seeds {
			out = append(out, fmt.Sprintf("[]byte(%s)", strconv.Quote(s)))
		}
		return out
	}
	write := func(target string, args []string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, a := range args {
			data := "go test fuzz v1\n" + a + "\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var auth []string
	for _, seed := range clientAuthSeeds {
		auth = append(auth, fmt.Sprintf("string(%s)\nstring(%s)", strconv.Quote(seed[0]), strconv.Quote(seed[1])))
	}
	write("FuzzSessionRequest", quoted(sessionSeeds))
	write("FuzzRevocationRequest", quoted(revocationSeeds))
	write("FuzzParseClientAuth", auth)
}
