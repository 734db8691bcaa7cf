package bus_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// eventTime is the fixed time of the golden events.
var eventTime = time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)

// goldenEvents returns one event of each type with fixed ids and times,
// keyed by the golden file they are written to.
func goldenEvents() []struct {
	file  string
	event *bus.Event
} {
	return []struct {
		file  string
		event *bus.Event
	}{{
		file: "revocation.json",
		event: &bus.Event{
			ID: "0194f1a2b3c4d5e6f708192a3b4c5d6e", Type: bus.TypeRevocation, Time: eventTime, Actor: "admin:alice",
			Revocation: &bus.Revocation{
				Kind: bus.KindSession, Value: "sess-7f3a", Reason: "laptop stolen",
				At: eventTime, Until: eventTime.Add(5*time.Minute + 30*time.Second),
			},
		},
	}, {
		file: "session.created.json",
		event: &bus.Event{
			ID: "0194f1a2b3c4d5e6f708192a3b4c5d6f", Type: bus.TypeSessionCreated, Time: eventTime, Actor: "service:login",
			Session: &bus.Session{
				ID: "sess-7f3a", Subject: "user-42", Tenant: "acme", ClientID: "web", Scope: "openid profile",
				Expires: eventTime.Add(24 * time.Hour),
			},
		},
	}, {
		file: "token.issued.json",
		event: &bus.Event{
			ID: "0194f1a2b3c4d5e6f708192a3b4c5d70", Type: bus.TypeTokenIssued, Time: eventTime, Actor: "service:login",
			Token: &bus.Token{
				ID: "jti-91bc", SessionID: "sess-7f3a", Subject: "user-42", Tenant: "acme", ClientID: "web",
				KeyID: "key-2026-03", IssuedAt: eventTime, Expires: eventTime.Add(5 * time.Minute),
			},
		},
	}, {
		file: "key.published.json",
		event: &bus.Event{
			ID: "0194f1a2b3c4d5e6f708192a3b4c5d71", Type: bus.TypeKeyPublished, Time: eventTime, Actor: "issuer",
			Key: &bus.Key{ID: "key-2026-03", Algorithm: "EdDSA"},
		},
	}, {
		file: "key.removed.json",
		event: &bus.Event{
			ID: "0194f1a2b3c4d5e6f708192a3b4c5d72", Type: bus.TypeKeyRemoved, Time: eventTime, Actor: "admin:alice",
			Key: &bus.Key{ID: "key-2026-02", Algorithm: "ES256"},
		},
	}, {
		file: "admin.revoke.json",
		event: &bus.Event{
			ID: "0194f1a2b3c4d5e6f708192a3b4c5d73", Type: bus.TypeAdminRevoke, Time: eventTime, Actor: "admin:alice",
			Admin: &bus.Admin{
				Action: "revoke", Source: "cli 10.0.0.7", Reason: "laptop stolen",
				Kind: bus.KindSession, Value: "sess-7f3a", Seq: 42,
			},
		},
	}}
}

func TestEvent_Golden(t *testing.T) {
	for _, g := range goldenEvents() {
		t.Run(string(g.event.Type), func(t *testing.T) {
			got, err := bus.Encode(g.event)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			path := filepath.Join("testdata", g.file)
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			want = bytes.TrimSuffix(want, []byte("\n"))
			if !bytes.Equal(got, want) {
				t.Fatalf("wire format changed:\n got %s\nwant %s\n(the wire format is public; run go test -update only if the change is intended)", got, want)
			}

			// The golden file decodes to the event it was made from.
			dec, err := bus.Decode(want)
			if err != nil {
				t.Fatalf("Decode(%s): %v", path, err)
			}
			if !reflect.DeepEqual(dec, g.event) {
				t.Fatalf("Decode(%s) = %+v, want %+v", path, dec, g.event)
			}
		})
	}
}

func TestDecode_RoundTrip(t *testing.T) {
	events := goldenEvents()
	// One revocation of each kind.
	for _, k := range bus.Kinds() {
		r := &bus.Revocation{Kind: k, At: eventTime, Until: eventTime.Add(time.Minute)}
		if k.NeedsValue() {
			r.Value = "value-of-" + k.String()
		}
		events = append(events, struct {
			file  string
			event *bus.Event
		}{event: &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: eventTime, Revocation: r}})
	}
	for _, g := range events {
		name := string(g.event.Type)
		if r := g.event.Revocation; r != nil {
			name += "/" + r.Kind.String()
		}
		t.Run(name, func(t *testing.T) {
			b, err := bus.Encode(g.event)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := bus.Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if !reflect.DeepEqual(got, g.event) {
				t.Fatalf("Decode(Encode(e)) = %+v, want %+v", got, g.event)
			}
		})
	}
}

func TestDecode_IgnoresUnknownMembers(t *testing.T) {
	in := `{"id":"a1","type":"revocation","time":"2026-03-04T05:06:07Z","actor":"x","future":{"a":[1,2]},` +
		`"revocation":{"kind":"token","value":"jti-1","at":"2026-03-04T05:06:07Z","until":"2026-03-04T05:11:07Z","scope":"new"}}`
	e, err := bus.Decode([]byte(in))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got, want := e.Revocation.Value, "jti-1"; got != want {
		t.Fatalf("value = %q, want %q", got, want)
	}
}

// validRevocation is a valid revocation event on the wire; rev builds
// variants of it.
const validRevocation = `{"id":"a1","type":"revocation","time":"2026-03-04T05:06:07Z","actor":"x",` +
	`"revocation":{"kind":"session","value":"s1","at":"2026-03-04T05:06:07Z","until":"2026-03-04T05:11:07Z"}}`

// rev returns a revocation event with the given revocation body members.
func rev(body string) string {
	return `{"id":"a1","type":"revocation","time":"2026-03-04T05:06:07Z","actor":"x","revocation":{` + body + `}}`
}

const (
	atUntil = `"at":"2026-03-04T05:06:07Z","until":"2026-03-04T05:11:07Z"`
	keyBody = `"key":{"kid":"k1","alg":"EdDSA"}`
)

// padded returns a valid revocation event of exactly n bytes, padded with
// JSON whitespace inside the object.
func padded(t *testing.T, n int) []byte {
	t.Helper()
	base := validRevocation
	if n < len(base) {
		t.Fatalf("cannot pad to %d bytes, minimum %d", n, len(base))
	}
	return []byte(base[:len(base)-1] + strings.Repeat(" ", n-len(base)) + "}")
}

func TestDecode_Valid(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"plain", []byte(validRevocation)},
		{"surrounding whitespace", []byte(" \n\t" + validRevocation + "\n ")},
		{"exactly MaxEventSize", padded(t, bus.MaxEventSize)},
		{"kind all without value", []byte(rev(`"kind":"all",` + atUntil))},
		{"value of MaxValueLen bytes", []byte(rev(`"kind":"token","value":"` + strings.Repeat("v", bus.MaxValueLen) + `",` + atUntil))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := bus.Decode(tt.in); err != nil {
				t.Fatalf("Decode: %v", err)
			}
		})
	}
}

func TestDecode_Malformed(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{name: "empty", in: nil},
		{name: "not JSON", in: []byte("revoke everything")},
		{name: "truncated", in: []byte(validRevocation[:len(validRevocation)-1])},
		{name: "array", in: []byte("[" + validRevocation + "]")},
		{name: "string", in: []byte(`"revocation"`)},
		{name: "null", in: []byte("null")},
		{name: "trailing object", in: []byte(validRevocation + validRevocation)},
		{name: "trailing garbage", in: []byte(validRevocation + "x")},
		{name: "trailing number", in: []byte(validRevocation + " 1")},
		{name: "trailing close brace", in: []byte(validRevocation + "}")},
		{name: "trailing close bracket", in: []byte(validRevocation + "]")},
		{name: "oversized", in: padded(t, bus.MaxEventSize+1)},
		{name: "oversized whitespace", in: []byte(validRevocation + strings.Repeat(" ", bus.MaxEventSize))},
		{name: "unknown type", in: []byte(strings.Replace(validRevocation, `"type":"revocation"`, `"type":"revocation.v2"`, 1))},
		{name: "missing type", in: []byte(strings.Replace(validRevocation, `"type":"revocation",`, ``, 1))},
		{name: "missing id", in: []byte(strings.Replace(validRevocation, `"id":"a1",`, ``, 1))},
		{name: "id too long", in: []byte(strings.Replace(validRevocation, `"id":"a1"`, `"id":"`+strings.Repeat("f", 65)+`"`, 1))},
		{name: "missing time", in: []byte(strings.Replace(validRevocation, `"time":"2026-03-04T05:06:07Z",`, ``, 1))},
		{name: "bad time", in: []byte(strings.Replace(validRevocation, `"time":"2026-03-04T05:06:07Z"`, `"time":"yesterday"`, 1))},
		{name: "missing body", in: []byte(`{"id":"a1","type":"revocation","time":"2026-03-04T05:06:07Z","actor":"x"}`)},
		{name: "null body", in: []byte(`{"id":"a1","type":"revocation","time":"2026-03-04T05:06:07Z","actor":"x","revocation":null}`)},
		{name: "two bodies", in: []byte(strings.TrimSuffix(validRevocation, "}") + "," + keyBody + "}")},
		{name: "body of another type", in: []byte(`{"id":"a1","type":"key.published","time":"2026-03-04T05:06:07Z","actor":"x",` +
			`"revocation":{"kind":"session","value":"s1",` + atUntil + `}}`)},
		{name: "unknown kind", in: []byte(rev(`"kind":"device","value":"d1",` + atUntil))},
		{name: "numeric kind", in: []byte(rev(`"kind":2,"value":"s1",` + atUntil))},
		{name: "missing kind", in: []byte(rev(`"value":"s1",` + atUntil))},
		{name: "session without value", in: []byte(rev(`"kind":"session",` + atUntil))},
		{name: "session with empty value", in: []byte(rev(`"kind":"session","value":"",` + atUntil))},
		{name: "all with value", in: []byte(rev(`"kind":"all","value":"everyone",` + atUntil))},
		{name: "value too long", in: []byte(rev(`"kind":"token","value":"` + strings.Repeat("v", bus.MaxValueLen+1) + `",` + atUntil))},
		{name: "missing at", in: []byte(rev(`"kind":"session","value":"s1","until":"2026-03-04T05:11:07Z"`))},
		{name: "until equal to at", in: []byte(rev(`"kind":"session","value":"s1","at":"2026-03-04T05:06:07Z","until":"2026-03-04T05:06:07Z"`))},
		{name: "until before at", in: []byte(rev(`"kind":"session","value":"s1","at":"2026-03-04T05:06:07Z","until":"2026-03-04T05:06:06Z"`))},
		{name: "missing until", in: []byte(rev(`"kind":"session","value":"s1","at":"2026-03-04T05:06:07Z"`))},
		{name: "invalid UTF-8 in value", in: []byte(rev(`"kind":"session","value":"s` + "\xff" + `1",` + atUntil))},
		{name: "invalid UTF-8 in reason", in: []byte(rev(`"kind":"session","value":"s1","reason":"` + "\xc3(" + `",` + atUntil))},
		{name: "invalid UTF-8 in jti", in: []byte(`{"id":"a1","type":"token.issued","time":"2026-03-04T05:06:07Z",` +
			`"token":{"jti":"j` + "\xed\xa0\x80" + `","sub":"u","kid":"k","iat":"2026-03-04T05:06:07Z","exp":"2026-03-04T05:11:07Z"}}`)},
		{name: "session without sid", in: []byte(`{"id":"a1","type":"session.created","time":"2026-03-04T05:06:07Z",` +
			`"session":{"sub":"u","expires":"2026-03-04T05:11:07Z"}}`)},
		{name: "token without sub", in: []byte(`{"id":"a1","type":"token.issued","time":"2026-03-04T05:06:07Z",` +
			`"token":{"jti":"j","kid":"k","iat":"2026-03-04T05:06:07Z","exp":"2026-03-04T05:11:07Z"}}`)},
		{name: "key without kid", in: []byte(`{"id":"a1","type":"key.removed","time":"2026-03-04T05:06:07Z","key":{"alg":"EdDSA"}}`)},
		{name: "admin without action", in: []byte(`{"id":"a1","type":"admin.revoke","time":"2026-03-04T05:06:07Z","admin":{"reason":"r"}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := bus.Decode(tt.in)
			if err == nil {
				t.Fatalf("Decode(%.200q) = %+v, want an error", tt.in, e)
			}
			if e != nil {
				t.Errorf("Decode returned an event with its error: %+v", e)
			}
			if !errors.Is(err, bus.ErrMalformed) {
				t.Fatalf("Decode(%.200q) error %q does not wrap ErrMalformed", tt.in, err)
			}
		})
	}
}

func TestEncode_Invalid(t *testing.T) {
	tests := []struct {
		name  string
		event *bus.Event
	}{
		{"zero", &bus.Event{}},
		{"no body", &bus.Event{ID: "a", Type: bus.TypeRevocation, Time: eventTime}},
		{"invalid kind", &bus.Event{ID: "a", Type: bus.TypeRevocation, Time: eventTime,
			Revocation: &bus.Revocation{Kind: 0, Value: "v", At: eventTime, Until: eventTime.Add(time.Minute)}}},
		{"invalid UTF-8 value", &bus.Event{ID: "a", Type: bus.TypeRevocation, Time: eventTime,
			Revocation: &bus.Revocation{Kind: bus.KindToken, Value: "\xff", At: eventTime, Until: eventTime.Add(time.Minute)}}},
		{"invalid UTF-8 tenant", &bus.Event{ID: "a", Type: bus.TypeTokenIssued, Time: eventTime,
			Token: &bus.Token{ID: "j", Subject: "s", Tenant: "\xff"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := bus.Encode(tt.event)
			if err == nil {
				t.Fatalf("Encode = %s, want an error", b)
			}
			if !errors.Is(err, bus.ErrMalformed) {
				t.Fatalf("Encode error %q does not wrap ErrMalformed", err)
			}
		})
	}
}

// TestEncode_DecodableSize checks that whatever Encode accepts, Decode
// accepts too: otherwise an issuer publishes events every verifier refuses.
func TestEncode_DecodableSize(t *testing.T) {
	e := goldenEvents()[0].event
	e.Actor = strings.Repeat("a", bus.MaxEventSize)
	b, err := bus.Encode(e)
	if err != nil {
		return // Encode refuses it: fine
	}
	if _, err := bus.Decode(b); err != nil {
		t.Fatalf("Encode produced %d bytes that Decode refuses: %v", len(b), err)
	}
}

func TestEvent_SubjectStream(t *testing.T) {
	want := map[bus.Type]struct{ subject, stream string }{
		bus.TypeRevocation:     {"herald.revoke.session", "HERALD"},
		bus.TypeSessionCreated: {"herald.session.created", "HERALD_AUDIT"},
		bus.TypeTokenIssued:    {"herald.issue.acme", "HERALD_AUDIT"},
		bus.TypeKeyPublished:   {"herald.key.published", "HERALD_AUDIT"},
		bus.TypeKeyRemoved:     {"herald.key.removed", "HERALD_AUDIT"},
		bus.TypeAdminRevoke:    {"herald.admin.revoke", "HERALD_AUDIT"},
	}
	for _, g := range goldenEvents() {
		t.Run(string(g.event.Type), func(t *testing.T) {
			w, ok := want[g.event.Type]
			if !ok {
				t.Fatalf("no expectation for type %q", g.event.Type)
			}
			if got := g.event.Subject(); got != w.subject {
				t.Errorf("Subject() = %q, want %q", got, w.subject)
			}
			if got := g.event.Stream(); got != w.stream {
				t.Errorf("Stream() = %q, want %q", got, w.stream)
			}
		})
	}
	t.Run("revocation kinds", func(t *testing.T) {
		for _, k := range bus.Kinds() {
			e := &bus.Event{Type: bus.TypeRevocation, Revocation: &bus.Revocation{Kind: k}}
			if got, want := e.Subject(), "herald.revoke."+k.String(); got != want {
				t.Errorf("Subject() of a %s revocation = %q, want %q", k, got, want)
			}
			if got, want := e.Subject(), bus.RevokeSubject(k); got != want {
				t.Errorf("Subject() = %q, RevokeSubject = %q", got, want)
			}
		}
	})
	t.Run("token without tenant", func(t *testing.T) {
		e := &bus.Event{Type: bus.TypeTokenIssued, Token: &bus.Token{}}
		if got, want := e.Subject(), "herald.issue._"; got != want {
			t.Errorf("Subject() = %q, want %q", got, want)
		}
	})
	t.Run("unknown type", func(t *testing.T) {
		e := &bus.Event{Type: "nope"}
		if got := e.Subject(); got != "" {
			t.Errorf("Subject() = %q, want empty", got)
		}
	})
}

func TestIssueSubject(t *testing.T) {
	tests := []struct{ tenant, want string }{
		{"", "herald.issue._"},
		{"acme", "herald.issue.acme"},
		{"acme.eu", "herald.issue.acme_eu"},
		{"a*", "herald.issue.a_"},
		{">", "herald.issue._"},
		{"big corp", "herald.issue.big_corp"},
		{"tab\there", "herald.issue.tab_here"},
		{"line\nbreak", "herald.issue.line_break"},
		{"del\x7f", "herald.issue.del_"},
		{"...", "herald.issue.___"},
		{"ünïcödé", "herald.issue.ünïcödé"},
		{"a-b_c:d", "herald.issue.a-b_c:d"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.tenant), func(t *testing.T) {
			got := bus.IssueSubject(tt.tenant)
			if got != tt.want {
				t.Fatalf("IssueSubject(%q) = %q, want %q", tt.tenant, got, tt.want)
			}
			token := strings.TrimPrefix(got, bus.SubjectIssuePrefix)
			if token == "" || strings.ContainsAny(token, ".*> \t\r\n") {
				t.Fatalf("IssueSubject(%q) = %q: %q is not one subject token", tt.tenant, got, token)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	const n = 10_000
	before := time.Now().UnixMilli()
	seen := make(map[string]bool, n)
	for range n {
		id := bus.NewID()
		if len(id) != 32 {
			t.Fatalf("NewID() = %q, %d chars, want 32", id, len(id))
		}
		if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
			t.Fatalf("NewID() = %q, not lower-case hex", id)
		}
		if seen[id] {
			t.Fatalf("NewID() returned %q twice", id)
		}
		seen[id] = true
	}

	// The first 12 hex digits are the creation time in milliseconds, so ids
	// sort roughly by time.
	id := bus.NewID()
	ms, err := strconv.ParseInt(id[:12], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if ms < before || ms > time.Now().UnixMilli() {
		t.Fatalf("NewID() %q starts with %d, want a millisecond time in [%d, now]", id, ms, before)
	}
}

func FuzzDecode(f *testing.F) {
	golden, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	if len(golden) == 0 {
		f.Fatal("no golden files in testdata")
	}
	for _, path := range golden {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(validRevocation))
	f.Add([]byte(rev(`"kind":"all",` + atUntil)))
	f.Add([]byte(validRevocation + "}"))
	f.Add([]byte("{}"))
	f.Add([]byte("null"))
	f.Add([]byte(""))

	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := bus.Decode(data)
		if err != nil {
			if e != nil {
				t.Fatalf("Decode returned an event with its error %v", err)
			}
			if !errors.Is(err, bus.ErrMalformed) {
				t.Fatalf("Decode error %q does not wrap ErrMalformed", err)
			}
			return
		}
		b, err := bus.Encode(e)
		if err != nil {
			t.Fatalf("Decode accepted %q but Encode of the result fails: %v", data, err)
		}
		e2, err := bus.Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v", data, err)
		}
		b2, err := bus.Encode(e2)
		if err != nil {
			t.Fatalf("second Encode: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", b, b2)
		}
	})
}
