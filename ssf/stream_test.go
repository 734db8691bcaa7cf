package ssf

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// wantBadRequest fails unless err is a 400 invalid_request *Error whose
// description contains want.
func wantBadRequest(t *testing.T, err error, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want an *Error", err, err)
	}
	if e.Status != http.StatusBadRequest || e.Code != "invalid_request" {
		t.Fatalf("error %d %s, want 400 invalid_request", e.Status, e.Code)
	}
	if !strings.Contains(e.Description, want) {
		t.Fatalf("description %q does not contain %q", e.Description, want)
	}
}

func TestParseStreamRequest(t *testing.T) {
	body := `{
		"stream_id": "f67e39a0a4d34d56b3aa1bc4cff0069f",
		"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://receiver.example.com/events",
			"authorization_header": "Bearer s3cret"},
		"events_requested": ["urn:example:secevent:events:type_2",
			"https://schemas.openid.net/secevent/caep/event-type/session-revoked"],
		"description": "Stream for Receiver A",
		"iss": "https://tr.example.com", "aud": "receiver", "events_supported": [], "events_delivered": [],
		"min_verification_interval": 10
	}`
	r, err := ParseStreamRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "f67e39a0a4d34d56b3aa1bc4cff0069f" {
		t.Errorf("ID %q", r.ID)
	}
	if r.EventsRequested == nil || !slices.Equal(*r.EventsRequested, []string{"urn:example:secevent:events:type_2", EventSessionRevoked}) {
		t.Errorf("events_requested %v", r.EventsRequested)
	}
	want := Delivery{Method: MethodPush, EndpointURL: "https://receiver.example.com/events", AuthorizationHeader: "Bearer s3cret"}
	if r.Delivery == nil || *r.Delivery != want {
		t.Errorf("delivery %+v, want %+v", r.Delivery, want)
	}
	if r.Description == nil || *r.Description != "Stream for Receiver A" {
		t.Errorf("description %v", r.Description)
	}
	if len(r.given) != 5 {
		t.Errorf("transmitter-supplied members kept: %d, want 5", len(r.given))
	}

	// Absent members stay nil: PATCH changes only what was sent.
	r, err = ParseStreamRequest([]byte(`{"stream_id":"abc","events_requested":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivery != nil || r.Description != nil || r.EventsRequested == nil || len(*r.EventsRequested) != 0 {
		t.Errorf("got delivery %v, description %v, events %v; want nil, nil, []", r.Delivery, r.Description, r.EventsRequested)
	}
	if r, err = ParseStreamRequest([]byte(` {} `)); err != nil || r.ID != "" || r.Delivery != nil {
		t.Errorf("empty object: %+v, %v", r, err)
	}
}

func TestParseStreamRequestRefuses(t *testing.T) {
	many := `["` + strings.Repeat(`u","`, MaxEventsRequested) + `u"]`
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", `nope`, "not a JSON object"},
		{"array", `[]`, "not a JSON object"},
		{"trailing data", `{} {}`, "stream configuration"},
		{"too big", `{"description":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, "more than 65536"},
		{"duplicate member", `{"description":"a","description":"b"}`, "duplicate member"},
		{"case-folded member", `{"Description":"a"}`, "case-sensitive"},
		{"unknown member", `{"inactivity_timeout":3600}`, `"inactivity_timeout" is not a member`},
		{"invalid UTF-8", "{\"description\":\"\xff\"}", "UTF-8"},
		{"lone surrogate", `{"description":"\ud800"}`, "surrogate"},
		{"stream_id number", `{"stream_id":1}`, "stream_id must be a string"},
		{"stream_id empty", `{"stream_id":""}`, "stream_id must be 1 to 64"},
		{"stream_id dot", `{"stream_id":"a.b"}`, "stream_id must hold only"},
		{"stream_id long", `{"stream_id":"` + strings.Repeat("a", 65) + `"}`, "stream_id must be 1 to 64"},
		{"events_requested string", `{"events_requested":"x"}`, "events_requested must be an array of strings"},
		{"events_requested null", `{"events_requested":null}`, "events_requested must be an array"},
		{"events_requested numbers", `{"events_requested":[1]}`, "events_requested must be an array of strings"},
		{"events_requested empty URI", `{"events_requested":[""]}`, "URIs of 1 to 2048"},
		{"events_requested long URI", `{"events_requested":["` + strings.Repeat("u", MaxURILen+1) + `"]}`, "URIs of 1 to 2048"},
		{"too many events", `{"events_requested":` + many + `}`, "more than 64"},
		{"description number", `{"description":5}`, "description must be a string"},
		{"description null", `{"description":null}`, "description must be a string"},
		{"huge description", `{"description":"` + strings.Repeat("d", MaxDescription+1) + `"}`, "more than 1024"},
		{"delivery string", `{"delivery":"push"}`, "delivery is invalid: not a JSON object"},
		{"delivery null", `{"delivery":null}`, "delivery"},
		{"delivery without method", `{"delivery":{"endpoint_url":"https://r.example"}}`, "method is required"},
		{"delivery method number", `{"delivery":{"method":8935}}`, "method must be a string"},
		{"delivery unknown member", `{"delivery":{"method":"urn:ietf:rfc:8935","timeout":3}}`, `"timeout" is not a delivery parameter`},
		{"delivery duplicate", `{"delivery":{"method":"a","method":"b"}}`, "duplicate member"},
		{"delivery long endpoint", `{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"https://` + strings.Repeat("h", MaxURILen) + `"}}`, "endpoint_url is longer"},
		{"delivery long authorization", `{"delivery":{"method":"urn:ietf:rfc:8935","authorization_header":"` + strings.Repeat("a", MaxAuthorization+1) + `"}}`, "authorization_header is longer"},
		{"iss number", `{"iss":1}`, "iss must be a string"},
		{"aud object", `{"aud":{}}`, "aud must be a string or an array"},
		{"events_supported string", `{"events_supported":"x"}`, "events_supported must be an array"},
		{"events_delivered numbers", `{"events_delivered":[1]}`, "events_delivered must be an array"},
		{"min_verification_interval string", `{"min_verification_interval":"10"}`, "must be an integer"},
		{"min_verification_interval fraction", `{"min_verification_interval":1.5}`, "must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseStreamRequest([]byte(tt.body))
			if r != nil {
				t.Errorf("returned a request %+v with the error", r)
			}
			wantBadRequest(t, err, tt.want)
		})
	}
}

func TestCheckTransmitterSupplied(t *testing.T) {
	cur := &Stream{
		ID: "s1", Issuer: "https://herald.example", Audience: []string{"receiver"},
		EventsSupported: []string{EventSessionRevoked}, EventsDelivered: []string{EventSessionRevoked},
		Delivery:                Delivery{Method: MethodPoll, EndpointURL: "https://herald.example/ssf/poll/s1"},
		MinVerificationInterval: 10,
	}
	tests := []struct {
		name, body, want string // want "": accepted
	}{
		{"none", `{"stream_id":"s1"}`, ""},
		{"all matching", `{"iss":"https://herald.example","aud":["receiver"],"events_supported":["` + EventSessionRevoked +
			`"],"events_delivered":["` + EventSessionRevoked + `"],"min_verification_interval":10}`, ""},
		{"aud as string", `{"aud":"receiver"}`, ""},
		{"iss", `{"iss":"https://other.example"}`, "iss does not match"},
		{"aud", `{"aud":"other"}`, "aud does not match"},
		{"aud extra", `{"aud":["receiver","other"]}`, "aud does not match"},
		{"events_supported", `{"events_supported":[]}`, "events_supported does not match"},
		{"events_delivered", `{"events_delivered":["urn:x"]}`, "events_delivered does not match"},
		{"min_verification_interval", `{"min_verification_interval":1}`, "min_verification_interval does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseStreamRequest([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			err = r.CheckTransmitterSupplied(cur)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantBadRequest(t, err, tt.want)
		})
	}

	t.Run("create", func(t *testing.T) {
		r, err := ParseStreamRequest([]byte(`{"aud":"receiver"}`))
		if err != nil {
			t.Fatal(err)
		}
		wantBadRequest(t, r.CheckTransmitterSupplied(nil), "aud is supplied by the transmitter")
	})

	// A receiver sending back the poll configuration it read: the
	// transmitter's endpoint_url is accepted and dropped, another is not.
	t.Run("poll endpoint echoed", func(t *testing.T) {
		r, err := ParseStreamRequest([]byte(`{"stream_id":"s1","delivery":{"method":"urn:ietf:rfc:8936","endpoint_url":"https://herald.example/ssf/poll/s1"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CheckTransmitterSupplied(cur); err != nil {
			t.Fatal(err)
		}
		if r.Delivery.EndpointURL != "" {
			t.Fatalf("endpoint_url %q kept", r.Delivery.EndpointURL)
		}
		if err := CheckDelivery(r.Delivery); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("poll endpoint changed", func(t *testing.T) {
		r, err := ParseStreamRequest([]byte(`{"stream_id":"s1","delivery":{"method":"urn:ietf:rfc:8936","endpoint_url":"https://evil.example/poll"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CheckTransmitterSupplied(cur); err != nil {
			t.Fatal(err)
		}
		wantBadRequest(t, CheckDelivery(r.Delivery), "must not be given for poll")
	})
}

func TestCheckDelivery(t *testing.T) {
	tests := []struct {
		name string
		d    *Delivery
		want string // "": accepted
	}{
		{"push https", &Delivery{Method: MethodPush, EndpointURL: "https://receiver.example.com/events?x=1"}, ""},
		{"push https port", &Delivery{Method: MethodPush, EndpointURL: "https://receiver.example.com:8443/events", AuthorizationHeader: "Bearer x"}, ""},
		{"push http localhost", &Delivery{Method: MethodPush, EndpointURL: "http://localhost:8080/events"}, ""},
		{"push http 127.0.0.1", &Delivery{Method: MethodPush, EndpointURL: "http://127.0.0.1/events"}, ""},
		{"push http 127.2.3.4", &Delivery{Method: MethodPush, EndpointURL: "http://127.2.3.4:9/events"}, ""},
		{"push http ::1", &Delivery{Method: MethodPush, EndpointURL: "http://[::1]:8080/events"}, ""},
		{"poll", &Delivery{Method: MethodPoll}, ""},
		{"nil", nil, "delivery is required"},
		{"unknown method", &Delivery{Method: "urn:example:websocket"}, `method "urn:example:websocket" is not supported`},
		{"empty method", &Delivery{}, "is not supported"},
		{"push without endpoint", &Delivery{Method: MethodPush}, "endpoint_url is required"},
		{"push http", &Delivery{Method: MethodPush, EndpointURL: "http://receiver.example.com/events"}, "http only to a loopback host"},
		{"push http 10.0.0.1", &Delivery{Method: MethodPush, EndpointURL: "http://10.0.0.1/events"}, "http only to a loopback host"},
		{"push http localhost suffix", &Delivery{Method: MethodPush, EndpointURL: "http://localhost.evil.example/events"}, "http only to a loopback host"},
		{"push ftp", &Delivery{Method: MethodPush, EndpointURL: "ftp://receiver.example.com/"}, "must be an https URL"},
		{"push relative", &Delivery{Method: MethodPush, EndpointURL: "/events"}, "must be an https URL"},
		{"push no host", &Delivery{Method: MethodPush, EndpointURL: "https:///events"}, "with a host"},
		{"push userinfo", &Delivery{Method: MethodPush, EndpointURL: "https://user:pw@receiver.example.com/events"}, "user information"},
		{"push fragment", &Delivery{Method: MethodPush, EndpointURL: "https://receiver.example.com/events#x"}, "fragment"},
		{"push empty fragment", &Delivery{Method: MethodPush, EndpointURL: "https://receiver.example.com/events#"}, "fragment"},
		{"push long", &Delivery{Method: MethodPush, EndpointURL: "https://r.example/" + strings.Repeat("p", MaxURILen)}, "longer than"},
		{"push bad URL", &Delivery{Method: MethodPush, EndpointURL: "https://r.example/\x7f"}, "not a URL"},
		{"push control in authorization", &Delivery{Method: MethodPush, EndpointURL: "https://r.example/", AuthorizationHeader: "Bearer a\r\nX: y"}, "control characters"},
		{"poll endpoint", &Delivery{Method: MethodPoll, EndpointURL: "https://herald.example/ssf/poll/x"}, "must not be given for poll"},
		{"poll authorization", &Delivery{Method: MethodPoll, AuthorizationHeader: "Bearer x"}, "only for push"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDelivery(tt.d)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantBadRequest(t, err, tt.want)
		})
	}
}

func TestDelivered(t *testing.T) {
	tests := []struct {
		name      string
		requested []string
		want      []string
	}{
		{"none requested", nil, EventsSupported},
		{"empty", []string{}, EventsSupported},
		{"supported", []string{EventSessionRevoked}, []string{EventSessionRevoked}},
		{"unknown kept out", []string{"urn:example:unknown", EventSessionRevoked}, []string{EventSessionRevoked}},
		{"only unknown", []string{"urn:example:unknown"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Delivered(tt.requested)
			if got == nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Delivered(%v) = %#v, want %#v", tt.requested, got, tt.want)
			}
		})
	}
	// The result is a copy: changing it leaves EventsSupported alone.
	Delivered(nil)[0] = "changed"
	if EventsSupported[0] != EventSessionRevoked {
		t.Fatal("Delivered returned EventsSupported itself")
	}
}
