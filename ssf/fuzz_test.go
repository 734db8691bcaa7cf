package ssf

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"unicode/utf8"
)

// checkRefusal fails unless err is a 400 invalid_request *Error with a
// short description of valid UTF-8.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != "invalid_request" {
		t.Fatalf("refusal %v (%T) is not a 400 invalid_request *Error", err, err)
	}
	if e.Description == "" || len(e.Description) > 1024 || !utf8.ValidString(e.Description) {
		t.Fatalf("description of %d bytes: %q", len(e.Description), e.Description)
	}
}

// FuzzParseStreamRequest: whatever ParseStreamRequest accepts stays within
// the bounds; whatever it refuses is a 400 with a short description; and
// CheckDelivery and CheckTransmitterSupplied take whatever it accepts.
func FuzzParseStreamRequest(f *testing.F) {
	for _, s := range []string{
		`{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"https://receiver.example.com/events","authorization_header":"Bearer x"},` +
			`"events_requested":["https://schemas.openid.net/secevent/caep/event-type/session-revoked"],"description":"d"}`,
		`{"stream_id":"f67e39a0a4d34d56b3aa1bc4cff0069f","delivery":{"method":"urn:ietf:rfc:8936"}}`,
		`{"stream_id":"s","iss":"https://herald.example","aud":["r"],"events_supported":[],"events_delivered":[],"min_verification_interval":10}`,
		`{"aud":"r","description":null}`,
		`{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"http://[::1]:8080/x#f"}}`,
		`{"description":"a","description":"b"}`,
		`{"Stream_ID":"x"}`,
		`{"events_requested":["\ud800"]}`,
		`{}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	cur := &Stream{ID: "s", Issuer: "https://herald.example", Audience: []string{"r"}, EventsSupported: EventsSupported,
		EventsDelivered: EventsSupported, Delivery: Delivery{Method: MethodPoll, EndpointURL: "https://herald.example/ssf/poll/s"},
		MinVerificationInterval: 10}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseStreamRequest(body)
		if err != nil {
			if r != nil {
				t.Fatal("a request with the error")
			}
			checkRefusal(t, err)
			return
		}
		if r.ID != "" && CheckStreamID(r.ID) != nil {
			t.Fatalf("stream_id %q accepted", r.ID)
		}
		if r.Description != nil && len(*r.Description) > MaxDescription {
			t.Fatalf("description of %d bytes accepted", len(*r.Description))
		}
		if r.EventsRequested != nil {
			if len(*r.EventsRequested) > MaxEventsRequested {
				t.Fatalf("%d events accepted", len(*r.EventsRequested))
			}
			for _, e := range *r.EventsRequested {
				if e == "" || len(e) > MaxURILen {
					t.Fatalf("event URI of %d bytes accepted", len(e))
				}
			}
		}
		if d := r.Delivery; d != nil {
			if d.Method == "" || len(d.EndpointURL) > MaxURILen || len(d.AuthorizationHeader) > MaxAuthorization {
				t.Fatalf("delivery %+v accepted", d)
			}
			if err := CheckDelivery(d); err != nil {
				checkRefusal(t, err)
			}
		}
		if err := r.CheckTransmitterSupplied(cur); err != nil {
			checkRefusal(t, err)
		}
		if err := r.CheckTransmitterSupplied(nil); err != nil {
			checkRefusal(t, err)
		}
	})
}

// FuzzParseSubject: whatever ParseSubject accepts is within the bounds,
// its canonical key reads back as the same subject, which matches itself
// and stays within MaxSubjectBytes; whatever it refuses is a 400 with a
// short description.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{
		`{"format":"iss_sub","iss":"https://idp.example.com/","sub":"1234"}`,
		`{"format":"opaque","id":"x"}`,
		`{"format":"email","email":"a@example.com"}`,
		`{"format":"phone_number","phone_number":"+12065550100"}`,
		`{"format":"account","uri":"acct:a@example.com"}`,
		`{"format":"did","url":"did:example:1"}`,
		`{"format":"uri","uri":"https://a.example/"}`,
		`{"format":"jwt_id","iss":"https://a.example","jti":"j"}`,
		`{"format":"saml_assertion_id","issuer":"https://a.example","assertion_id":"_a"}`,
		`{"format":"ip-addresses","ip-addresses":["10.0.0.1","::1"]}`,
		`{"format":"complex","user":{"format":"email","email":"a@example.com"},"device":{"format":"ip-addresses","ip-addresses":["10.29.37.75"]}}`,
		`{"format":"complex","session":{"format":"complex"}}`,
		`{"format":"opaque","id":"a","id":"b"}`,
		`{"format":"aliases","identifiers":[]}`,
		`{}`, `[]`, `null`, `""`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := ParseSubject(raw)
		if err != nil {
			if !s.IsZero() {
				t.Fatal("a subject with the error")
			}
			checkRefusal(t, err)
			return
		}
		key := s.Key()
		if key == "" || s.Format() == "" {
			t.Fatalf("accepted %q as %q", raw, key)
		}
		// Escaping may make the key longer than the input: parse it
		// without the size bound.
		m, err := parseSubject(json.RawMessage(key), false)
		if err != nil {
			t.Fatalf("key %s does not parse: %v", key, err)
		}
		back := Subject{m: m}
		if back.Key() != key {
			t.Fatalf("key %s parses to %s", key, back.Key())
		}
		if !s.Matches(back) || !back.Matches(s) {
			t.Fatalf("%s does not match itself", key)
		}
	})
}
