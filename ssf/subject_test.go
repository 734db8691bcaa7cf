package ssf

import (
	"encoding/json"
	"strings"
	"testing"
)

// mustSubject parses raw or fails the test.
func mustSubject(t *testing.T, raw string) Subject {
	t.Helper()
	s, err := ParseSubject(json.RawMessage(raw))
	if err != nil {
		t.Fatalf("ParseSubject(%s): %v", raw, err)
	}
	return s
}

func TestParseSubject(t *testing.T) {
	tests := []struct {
		name, raw, key string
	}{
		{"iss_sub", `{"format":"iss_sub","iss":"https://idp.example.com/","sub":"1234"}`,
			`{"format":"iss_sub","iss":"https://idp.example.com/","sub":"1234"}`},
		{"member order", `{"sub":"1234","iss":"https://idp.example.com/","format":"iss_sub"}`,
			`{"format":"iss_sub","iss":"https://idp.example.com/","sub":"1234"}`},
		{"opaque", `{"format":"opaque","id":"11112222333344445555"}`, `{"format":"opaque","id":"11112222333344445555"}`},
		{"email", `{"format":"email","email":"user@example.com"}`, `{"email":"user@example.com","format":"email"}`},
		{"account", `{"format":"account","uri":"acct:example.user@service.example.com"}`,
			`{"format":"account","uri":"acct:example.user@service.example.com"}`},
		{"phone_number", `{"format":"phone_number","phone_number":"+12065550100"}`,
			`{"format":"phone_number","phone_number":"+12065550100"}`},
		{"did", `{"format":"did","url":"did:example:123456"}`, `{"format":"did","url":"did:example:123456"}`},
		{"uri", `{"format":"uri","uri":"https://user.example.com/"}`, `{"format":"uri","uri":"https://user.example.com/"}`},
		{"jwt_id", `{"format":"jwt_id","iss":"https://idp.example.com/123456789/","jti":"B70BA622-9515-4353-A866-823539EECBC8"}`,
			`{"format":"jwt_id","iss":"https://idp.example.com/123456789/","jti":"B70BA622-9515-4353-A866-823539EECBC8"}`},
		{"saml_assertion_id", `{"format":"saml_assertion_id","issuer":"https://idp.example.com/123456789/","assertion_id":"_8e8dc5f69a98cc4c1ff3427e5ce34606fd672f91e6"}`,
			`{"assertion_id":"_8e8dc5f69a98cc4c1ff3427e5ce34606fd672f91e6","format":"saml_assertion_id","issuer":"https://idp.example.com/123456789/"}`},
		{"ip-addresses", `{"format":"ip-addresses","ip-addresses":["10.29.37.75","2001:0db8:0000:0000:0000:8a2e:0370:7334"]}`,
			`{"format":"ip-addresses","ip-addresses":["10.29.37.75","2001:0db8:0000:0000:0000:8a2e:0370:7334"]}`},
		{"complex", `{"format":"complex","user":{"format":"email","email":"bar@example.com"},"tenant":{"format":"iss_sub","iss":"https://example.com/idp1","sub":"1234"}}`,
			`{"format":"complex","tenant":{"format":"iss_sub","iss":"https://example.com/idp1","sub":"1234"},"user":{"email":"bar@example.com","format":"email"}}`},
		{"complex every member", `{"format":"complex","user":{"format":"opaque","id":"u"},"device":{"format":"opaque","id":"d"},` +
			`"session":{"format":"opaque","id":"s"},"application":{"format":"opaque","id":"a"},"tenant":{"format":"opaque","id":"t"},` +
			`"org_unit":{"format":"opaque","id":"o"},"group":{"format":"opaque","id":"g"}}`,
			`{"application":{"format":"opaque","id":"a"},"device":{"format":"opaque","id":"d"},"format":"complex",` +
				`"group":{"format":"opaque","id":"g"},"org_unit":{"format":"opaque","id":"o"},"session":{"format":"opaque","id":"s"},` +
				`"tenant":{"format":"opaque","id":"t"},"user":{"format":"opaque","id":"u"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSubject(t, tt.raw)
			if got := s.Key(); got != tt.key {
				t.Fatalf("Key() = %s, want %s", got, tt.key)
			}
			// A stored subject reads back to the same key.
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var back Subject
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.Key() != tt.key || !back.Matches(s) || !s.Matches(back) {
				t.Fatalf("stored and read back: %s, matching %v", back.Key(), back.Matches(s))
			}
		})
	}
}

func TestParseSubjectRefuses(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"not JSON", `x`, "not a JSON object"},
		{"array", `[]`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"too big", `{"format":"opaque","id":"` + strings.Repeat("i", MaxSubjectBytes) + `"}`, "more than 2048"},
		{"no format", `{"id":"x"}`, "format is required"},
		{"format number", `{"format":1,"id":"x"}`, "format must be a string"},
		{"unknown format", `{"format":"phone","phone_number":"+12065550123"}`, `format "phone" is not supported`},
		{"aliases", `{"format":"aliases","identifiers":[{"format":"opaque","id":"x"}]}`, `format "aliases" is not supported`},
		{"subject_type", `{"subject_type":"iss_sub","iss":"https://a.example","sub":"x"}`, "format is required"},
		{"missing member", `{"format":"iss_sub","iss":"https://a.example"}`, "the iss_sub format needs sub"},
		{"extra member", `{"format":"opaque","id":"x","email":"a@b"}`, `"email" is not a member of the opaque format`},
		{"empty string", `{"format":"opaque","id":""}`, "id must be a string of 1 to 1024"},
		{"number member", `{"format":"opaque","id":5}`, "id must be a string"},
		{"null member", `{"format":"opaque","id":null}`, "id must be a string"},
		{"long string", `{"format":"email","email":"` + strings.Repeat("e", 1025) + `"}`, "email must be a string of 1 to 1024"},
		{"duplicate member", `{"format":"opaque","id":"a","id":"b"}`, "duplicate member"},
		{"case-folded format", `{"Format":"opaque","id":"a"}`, "format is required"},
		{"invalid UTF-8", "{\"format\":\"opaque\",\"id\":\"\xff\"}", "UTF-8"},
		{"lone surrogate", `{"format":"opaque","id":"\udc00"}`, "surrogate"},
		{"account not acct", `{"format":"account","uri":"mailto:a@b"}`, "acct: URI"},
		{"did not did", `{"format":"did","url":"https://a.example"}`, "DID URL"},
		{"uri relative", `{"format":"uri","uri":"/user"}`, "absolute URI"},
		{"phone without plus", `{"format":"phone_number","phone_number":"12065550100"}`, "E.164"},
		{"phone letters", `{"format":"phone_number","phone_number":"+1206CALLME"}`, "E.164"},
		{"phone long", `{"format":"phone_number","phone_number":"+1234567890123456"}`, "E.164"},
		{"ip not address", `{"format":"ip-addresses","ip-addresses":["10.0.0.300"]}`, "not an IP address"},
		{"ip empty", `{"format":"ip-addresses","ip-addresses":[]}`, "array of 1 to 16"},
		{"ip string", `{"format":"ip-addresses","ip-addresses":"10.0.0.1"}`, "array of 1 to 16"},
		{"complex empty", `{"format":"complex"}`, "at least one member"},
		{"complex unknown member", `{"format":"complex","owner":{"format":"opaque","id":"x"}}`, `"owner" is not a member of a complex subject`},
		{"complex nested", `{"format":"complex","user":{"format":"complex","user":{"format":"opaque","id":"x"}}}`, "user: a member of a complex subject must be a simple subject"},
		{"complex member string", `{"format":"complex","user":"x"}`, "user: not a JSON object"},
		{"complex member duplicate", `{"format":"complex","user":{"format":"opaque","id":"a","id":"b"}}`, "user: duplicate member"},
		{"complex member bad", `{"format":"complex","user":{"format":"opaque"}}`, "user: the opaque format needs id"},
		{"complex duplicate member", `{"format":"complex","user":{"format":"opaque","id":"a"},"user":{"format":"opaque","id":"b"}}`, "duplicate member"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSubject(json.RawMessage(tt.raw))
			if !s.IsZero() {
				t.Errorf("returned subject %s with the error", s.Key())
			}
			wantBadRequest(t, err, tt.want)
		})
	}
}

func TestConstructors(t *testing.T) {
	tests := []struct {
		name string
		s    Subject
		key  string
	}{
		{"IssSub", IssSub("https://herald.example", "alice"), `{"format":"iss_sub","iss":"https://herald.example","sub":"alice"}`},
		{"Opaque", Opaque("s-1"), `{"format":"opaque","id":"s-1"}`},
		{"Complex", Complex(map[string]Subject{"session": Opaque("s-1"), "user": IssSub("https://herald.example", "alice"), "device": {}}),
			`{"format":"complex","session":{"format":"opaque","id":"s-1"},"user":{"format":"iss_sub","iss":"https://herald.example","sub":"alice"}}`},
		{"zero", Subject{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Key(); got != tt.key {
				t.Fatalf("Key() = %s, want %s", got, tt.key)
			}
			if tt.key == "" {
				return
			}
			// What Herald builds, a receiver could have sent: it parses to
			// the same key.
			parsed := mustSubject(t, tt.key)
			if got := parsed.Key(); got != tt.key {
				t.Fatalf("parsed back: %s", got)
			}
			if !parsed.Matches(tt.s) || !tt.s.Matches(parsed) {
				t.Fatal("does not match the same subject parsed")
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		name         string
		added, event string
		want         bool
	}{
		// SSF 1.0 section 8.1.3.1, the three examples verbatim.
		{"spec: added less restrictive", `{
  "format": "complex",
  "tenant": {
    "format": "opaque",
    "id": "example-a38h4792-uw2"
  }
}`, `{
  "format": "complex",
  "tenant": {
    "format": "opaque",
    "id": "example-a38h4792-uw2"
  },
  "user": {
    "format": "email",
    "email": "jdoe@example.com"
  }
}`, true},
		{"spec: added more restrictive", `{
  "format": "complex",
  "user": {
    "format": "email",
    "email": "jdoe@example.com"
  },
  "device": {
    "format": "ip-addresses",
    "ip-addresses": ["10.29.37.75"]
  }
}`, `{
  "format": "complex",
  "user": {
    "format": "email",
    "email": "jdoe@example.com"
  }
}`, true},
		{"spec: no match", `{
  "format": "complex",
  "user": {
    "format": "email",
    "email": "jdoe@example.com"
  },
  "group": {
    "format": "did",
    "url": "did:example:123456"
  }
}`, `{
  "format": "complex",
  "user": {
    "format": "email",
    "email": "jdoe@example.com"
  },
  "group": {
    "format": "did",
    "url": "did:example:9999999"
  }
}`, false},

		{"simple identical", `{"format":"iss_sub","iss":"https://h.example","sub":"a"}`, `{"sub":"a","iss":"https://h.example","format":"iss_sub"}`, true},
		{"simple different value", `{"format":"iss_sub","iss":"https://h.example","sub":"a"}`, `{"format":"iss_sub","iss":"https://h.example","sub":"b"}`, false},
		{"simple different iss", `{"format":"iss_sub","iss":"https://h.example","sub":"a"}`, `{"format":"iss_sub","iss":"https://o.example","sub":"a"}`, false},
		{"simple different format", `{"format":"opaque","id":"a"}`, `{"format":"email","email":"a"}`, false},
		{"complex no member in common", `{"format":"complex","tenant":{"format":"opaque","id":"t"}}`,
			`{"format":"complex","session":{"format":"opaque","id":"s"}}`, false},
		{"simple added in complex event", `{"format":"iss_sub","iss":"https://h.example","sub":"a"}`,
			`{"format":"complex","user":{"format":"iss_sub","iss":"https://h.example","sub":"a"},"session":{"format":"opaque","id":"s"}}`, true},
		{"simple added not in complex event", `{"format":"iss_sub","iss":"https://h.example","sub":"b"}`,
			`{"format":"complex","user":{"format":"iss_sub","iss":"https://h.example","sub":"a"}}`, false},
		{"complex added holds simple event", `{"format":"complex","user":{"format":"iss_sub","iss":"https://h.example","sub":"a"},"tenant":{"format":"opaque","id":"t"}}`,
			`{"format":"iss_sub","iss":"https://h.example","sub":"a"}`, true},
		{"complex added lacks simple event", `{"format":"complex","tenant":{"format":"opaque","id":"t"}}`,
			`{"format":"iss_sub","iss":"https://h.example","sub":"a"}`, false},
		{"session revocation", `{"format":"complex","session":{"format":"opaque","id":"s1"}}`,
			`{"format":"complex","session":{"format":"opaque","id":"s1"}}`, true},
		{"other session", `{"format":"complex","session":{"format":"opaque","id":"s1"}}`,
			`{"format":"complex","session":{"format":"opaque","id":"s2"}}`, false},
		{"addresses in another order", `{"format":"ip-addresses","ip-addresses":["10.0.0.1","10.0.0.2"]}`,
			`{"format":"ip-addresses","ip-addresses":["10.0.0.2","10.0.0.1"]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, event := mustSubject(t, tt.added), mustSubject(t, tt.event)
			if got := added.Matches(event); got != tt.want {
				t.Fatalf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
	if (Subject{}).Matches(Opaque("a")) || Opaque("a").Matches(Subject{}) {
		t.Fatal("the zero subject matches")
	}
}

// BenchmarkMatches measures what the transmitter does for every event and
// every subject of a stream: an added user against a session revocation.
func BenchmarkMatches(b *testing.B) {
	added := IssSub("https://herald.example", "alice")
	ev := Complex(map[string]Subject{"session": Opaque("s-1"), "user": IssSub("https://herald.example", "bob")})
	for b.Loop() {
		if added.Matches(ev) {
			b.Fatal("matched")
		}
	}
}
