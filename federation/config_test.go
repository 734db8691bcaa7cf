package federation

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
)

func TestLoadFile_Defaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trust.json")
	const file = `{"issuers": [
		{"issuer": "https://idp.example.com/realms/a"},
		{"issuer": "https://login.example.org", "audience": ["api"], "client_id": "herald-prod",
		 "claims": {"session": "-", "client": ["azp"], "tenant": "tid", "email": "email"},
		 "algorithms": ["RS256"], "max_token_lifetime": "90m", "tokens": false, "ssf": true,
		 "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": "subject"},
		 "push_credential": "okta-push"}
	]}`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("issuers = %d, want 2", len(got))
	}
	a := got[0]
	if !a.Tokens || a.SSF || a.ClientID != DefaultClientID || a.MaxTokenLifetime != time.Hour ||
		!slices.Equal(a.Algorithms, bus.ExternalAlgorithms()) || len(a.Audience) != 0 {
		t.Errorf("defaults = %+v", a)
	}
	b := got[1]
	if b.Tokens || !b.SSF || b.ClientID != "herald-prod" || b.MaxTokenLifetime != 90*time.Minute ||
		!slices.Equal(b.Algorithms, []string{"RS256"}) || b.Claims.Tenant != "tid" || b.Claims.SessionClaim() != "" ||
		b.PushCredential != "okta-push" || b.Events["https://schemas.openid.net/secevent/caep/event-type/session-revoked"] != ActionSubject {
		t.Errorf("explicit = %+v", b)
	}
	if tr := b.Trust(); tr.MaxTTL != 5400 || !slices.Equal(tr.Audiences, []string{"api"}) {
		t.Errorf("trust = %+v", tr)
	}

	// The JSON form reads back the same.
	out, err := json.Marshal(map[string]any{"issuers": got})
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("parse %s: %v", out, err)
	}
	for i := range got {
		x, _ := json.Marshal(got[i])
		y, _ := json.Marshal(again[i])
		if string(x) != string(y) {
			t.Errorf("round trip: %s, want %s", y, x)
		}
	}
}

func TestParse_Refused(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"unknown member", `{"issuers":[{"issuer":"https://a.example","audiences":["x"]}]}`, `issuers[0] (https://a.example): json: unknown field "audiences"`},
		{"unknown top member", `{"issuers":[],"extra":1}`, `unknown field "extra"`},
		{"duplicate member", `{"issuers":[{"issuer":"https://a.example","issuer":"https://b.example"}]}`, `issuers[0]`},
		{"duplicate claims member", `{"issuers":[{"issuer":"https://a.example","claims":{"tenant":"a","tenant":"b"}}]}`, `claims: duplicate member "tenant"`},
		{"unknown claims member", `{"issuers":[{"issuer":"https://a.example","claims":{"sid":"x"}}]}`, `claims: json: unknown field "sid"`},
		{"duplicate event", `{"issuers":[{"issuer":"https://a.example","events":{"u":"record","u":"subject"}}]}`, `events: duplicate member "u"`},
		{"case-folded member", `{"issuers":[{"Issuer":"https://a.example"}]}`, `names are case-sensitive`},
		{"same issuer twice", `{"issuers":[{"issuer":"https://a.example"},{"issuer":"https://a.example"}]}`, `https://a.example is configured twice`},
		{"http", `{"issuers":[{"issuer":"http://a.example"}]}`, `issuers[0] (http://a.example): issuer: url "http://a.example": must be https`},
		{"no issuer", `{"issuers":[{"audience":["x"]}]}`, `issuers[0] (): issuer:`},
		{"query", `{"issuers":[{"issuer":"https://a.example?x=1"}]}`, `no user information, query or fragment`},
		{"lifetime too long", `{"issuers":[{"issuer":"https://a.example","max_token_lifetime":"25h"}]}`, `max_token_lifetime 25h0m0s: must be 1s to 24h0m0s`},
		{"lifetime not a duration", `{"issuers":[{"issuer":"https://a.example","max_token_lifetime":"1 hour"}]}`, `max_token_lifetime`},
		{"bad algorithm", `{"issuers":[{"issuer":"https://a.example","algorithms":["HS256"]}]}`, `algorithm "HS256" is not supported`},
		{"bad action", `{"issuers":[{"issuer":"https://a.example","events":{"urn:x":"delete"}}]}`, `action "delete" is not session, subject or record`},
		{"bad credential", `{"issuers":[{"issuer":"https://a.example","push_credential":"Okta Push"}]}`, `push_credential`},
		{"trailing data", `{"issuers":[]} {}`, `data after the JSON value`},
		{"not an object", `[]`, `not a JSON object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadFile_Missing(t *testing.T) {
	if _, err := LoadFile(filepath.Join(t.TempDir(), "none.json")); err == nil || !strings.Contains(err.Error(), "load trust file") {
		t.Fatalf("err = %v", err)
	}
}

func TestFromURLs(t *testing.T) {
	got, err := FromURLs([]string{"https://a.example", "http://127.0.0.1:8080/realms/x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Tokens || got[1].MaxTokenLifetime != DefaultMaxTokenLifetime {
		t.Fatalf("issuers = %+v", got)
	}
	if _, err := FromURLs([]string{"https://a.example", "https://a.example"}); err == nil || !strings.Contains(err.Error(), "configured twice") {
		t.Fatalf("duplicate: err = %v", err)
	}
	if _, err := FromURLs([]string{"ftp://a.example"}); err == nil || !strings.Contains(err.Error(), "ftp://a.example") {
		t.Fatalf("ftp: err = %v", err)
	}
}

func TestMerge(t *testing.T) {
	a, _ := FromURLs([]string{"https://a.example"})
	b, _ := FromURLs([]string{"https://b.example"})
	got, err := Merge(a, b)
	if err != nil || len(got) != 2 {
		t.Fatalf("merge = %v, %v", got, err)
	}
	if _, err := Merge(a, b, a); err == nil || !strings.Contains(err.Error(), "https://a.example is configured twice") {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://idp.example.com", true},
		{"https://idp.example.com/realms/a", true},
		{"http://127.0.0.1:9000", true},
		{"http://[::1]:9000/x", true},
		{"http://localhost:9000", true},
		{"http://idp.example.com", false},
		{"http://10.0.0.1", false},
		{"https://user:pw@idp.example.com", false},
		{"https://idp.example.com#x", false},
		{"https://idp.example.com?", false},
		{"/relative", false},
		{"https:opaque", false},
		{"", false},
		{"https://idp.example.com/a b", false},
	} {
		if err := CheckURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("CheckURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}
