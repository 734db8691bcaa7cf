package signals_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

func TestSET_Revocation(t *testing.T) {
	f := newFixture(t)
	const other = "https://idp-a.example/oauth2/default"
	issSub := map[string]any{"format": "iss_sub", "iss": other, "sub": "user-1"}
	opaque := map[string]any{"format": "opaque", "id": "opaque-1"}
	email := map[string]any{"format": "email", "email": "jane@example.com"}
	jwtID := map[string]any{"format": "jwt_id", "iss": other, "jti": "token-1"}
	session := map[string]any{"format": "opaque", "id": "sid-1"}
	device := map[string]any{"format": "iss_sub", "iss": issA, "sub": "device-1"}
	phone := map[string]any{"format": "phone_number", "phone_number": "+1 206 555 0123"}
	complexOf := func(members map[string]any) map[string]any {
		m := map[string]any{"format": "complex"}
		for k, v := range members {
			m[k] = v
		}
		return m
	}
	revoke := func(kind bus.Kind, value, iss string) signals.Outcome {
		return signals.Outcome{Revoke: true, Kind: kind, Value: value, Issuer: iss}
	}
	cases := []struct {
		name       string
		event      string
		subject    map[string]any
		overrides  map[string]signals.Action
		emailClaim string
		want       signals.Outcome
	}{
		{"session-revoked iss_sub", signals.EventSessionRevoked, issSub, nil, "", revoke(bus.KindSubject, "user-1", other)},
		{"session-revoked opaque is a session", signals.EventSessionRevoked, opaque, nil, "", revoke(bus.KindSession, "opaque-1", issA)},
		{"session-revoked complex session", signals.EventSessionRevoked, complexOf(map[string]any{"session": session, "user": issSub}), nil, "",
			revoke(bus.KindSession, "sid-1", issA)},
		{"session-revoked complex user and device", signals.EventSessionRevoked, complexOf(map[string]any{"user": issSub, "device": device}), nil, "",
			revoke(bus.KindSubject, "user-1", other)},
		{"session-revoked complex session in another format", signals.EventSessionRevoked,
			complexOf(map[string]any{"session": device, "user": issSub}), nil, "", revoke(bus.KindSubject, "user-1", other)},
		{"session-revoked complex device only", signals.EventSessionRevoked, complexOf(map[string]any{"device": device}), nil, "", signals.Outcome{}},
		{"session-revoked jwt_id", signals.EventSessionRevoked, jwtID, nil, "", revoke(bus.KindToken, "token-1", other)},
		{"credential-change iss_sub", signals.EventCredentialChange, issSub, nil, "", revoke(bus.KindSubject, "user-1", other)},
		{"credential-change opaque is a subject", signals.EventCredentialChange, opaque, nil, "", revoke(bus.KindSubject, "opaque-1", issA)},
		{"credential-change complex user beats session", signals.EventCredentialChange,
			complexOf(map[string]any{"session": session, "user": issSub}), nil, "", revoke(bus.KindSubject, "user-1", other)},
		{"credential-change complex session only", signals.EventCredentialChange, complexOf(map[string]any{"session": session}), nil, "",
			revoke(bus.KindSession, "sid-1", issA)},
		{"credential-change complex phone user falls back to session", signals.EventCredentialChange,
			complexOf(map[string]any{"session": session, "user": phone}), nil, "", revoke(bus.KindSession, "sid-1", issA)},
		{"token-claims-change jwt_id", signals.EventTokenClaimsChange, jwtID, nil, "", revoke(bus.KindToken, "token-1", other)},
		{"token-claims-change email with a claim", signals.EventTokenClaimsChange, email, nil, "email", revoke(bus.KindSubject, "jane@example.com", issA)},
		{"token-claims-change email without a claim", signals.EventTokenClaimsChange, email, nil, "", signals.Outcome{}},
		{"complex email user without a claim", signals.EventAccountDisabled, complexOf(map[string]any{"user": email}), nil, "", signals.Outcome{}},
		{"complex opaque user", signals.EventAccountDisabled, complexOf(map[string]any{"user": opaque}), nil, "", revoke(bus.KindSubject, "opaque-1", issA)},
		{"account-disabled", signals.EventAccountDisabled, issSub, nil, "", revoke(bus.KindSubject, "user-1", other)},
		{"account-purged", signals.EventAccountPurged, issSub, nil, "", revoke(bus.KindSubject, "user-1", other)},
		{"credential-compromise", signals.EventCredentialCompromise, issSub, nil, "", revoke(bus.KindSubject, "user-1", other)},
		{"sessions-revoked", signals.EventSessionsRevoked, issSub, nil, "", revoke(bus.KindSubject, "user-1", other)},
		{"account-enabled is recorded", signals.RISCPrefix + "account-enabled", issSub, nil, "", signals.Outcome{}},
		{"session-established is recorded", signals.CAEPPrefix + "session-established", issSub, nil, "", signals.Outcome{}},
		{"verification is recorded", "https://schemas.openid.net/secevent/ssf/event-type/verification", issSub, nil, "", signals.Outcome{}},
		{"override records a default", signals.EventCredentialChange, issSub,
			map[string]signals.Action{signals.EventCredentialChange: signals.ActionRecord}, "", signals.Outcome{}},
		{"override revokes an unknown type", "https://example.com/event/kill-session", opaque,
			map[string]signals.Action{"https://example.com/event/kill-session": signals.ActionSession}, "", revoke(bus.KindSession, "opaque-1", issA)},
		{"override to subject", signals.EventSessionRevoked, opaque,
			map[string]signals.Action{signals.EventSessionRevoked: signals.ActionSubject}, "", revoke(bus.KindSubject, "opaque-1", issA)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := sign(t, f.keys["a-ed"], setTyp, with(setClaims(), map[string]any{
				"sub_id": tc.subject, "events": map[string]any{tc.event: map[string]any{}}}))
			s, err := signals.ParseSET(raw, f.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Revocation(tc.overrides, tc.emailClaim)
			if err != nil {
				t.Fatal(err)
			}
			if got.Note == "" {
				t.Error("no note")
			}
			t.Log(got.Note)
			got.Note = ""
			if got != tc.want {
				t.Fatalf("outcome = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSET_RevocationNotesIgnoredMembers(t *testing.T) {
	f := newFixture(t)
	raw := sign(t, f.keys["a-ed"], setTyp, with(setClaims(), map[string]any{"sub_id": map[string]any{
		"format": "complex",
		"user":   map[string]any{"format": "iss_sub", "iss": issA, "sub": "u"},
		"tenant": map[string]any{"format": "opaque", "id": "t"},
		"device": map[string]any{"format": "opaque", "id": "d"},
	}}))
	s, err := signals.ParseSET(raw, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(s.Subject.Others, ","), "device,tenant"; got != want {
		t.Fatalf("others = %q, want %q", got, want)
	}
	o, err := s.Revocation(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(o.Note, "device, tenant") {
		t.Fatalf("note %q does not name the ignored members", o.Note)
	}
}

func TestValidateEvents(t *testing.T) {
	if err := signals.ValidateEvents(signals.DefaultEvents()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := map[string]signals.Action{"": signals.ActionRecord, "x": "drop", strings.Repeat("u", 257): signals.ActionSubject}
	err := signals.ValidateEvents(bad)
	if err == nil {
		t.Fatal("accepted bad overrides")
	}
	for _, want := range []string{`""`, `"drop"`, "1 to 256"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	many := map[string]signals.Action{}
	for i := range 65 {
		many[fmt.Sprint("urn:e:", i)] = signals.ActionRecord
	}
	if signals.ValidateEvents(many) == nil {
		t.Fatal("accepted 65 overrides")
	}
	f := newFixture(t)
	s, err := signals.ParseSET(sign(t, f.keys["a-ed"], setTyp, setClaims()), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revocation(bad, ""); err == nil {
		t.Fatal("Revocation took bad overrides")
	}
}

func TestConfig_Validate(t *testing.T) {
	bad := signals.Config{
		Sources: []signals.Source{
			{Issuer: "not an issuer"},
			{Issuer: issA, Audiences: []string{""}, Events: map[string]signals.Action{"x": "y"}},
			{Issuer: issA},
		},
		MaxAge:       -1,
		Leeway:       time.Hour,
		MaxTokenSize: 1 << 20,
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("accepted a bad config")
	}
	for _, want := range []string{"key function", "not an issuer", "audience", "unknown action", "twice", "max age", "leeway", "max token size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	f := newFixture(t)
	if err := f.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if src, ok := f.cfg.Source(issB); !ok || src.ClientID != "herald-at-b" {
		t.Fatalf("Source(B) = %+v, %v", src, ok)
	}
	if _, ok := f.cfg.Source(issOther); ok {
		t.Fatal("Source found an issuer that is not configured")
	}
}

func TestParse_NilConfig(t *testing.T) {
	f := newFixture(t)
	if _, err := signals.ParseSET(sign(t, f.keys["a-ed"], setTyp, setClaims()), nil); signals.Code(err) != signals.CodeInvalidIssuer {
		t.Fatalf("ParseSET without a config: %v", err)
	}
	if _, err := signals.ParseLogoutToken(sign(t, f.keys["a-ed"], nil, logoutClaims()), nil); signals.Code(err) != signals.CodeInvalidIssuer {
		t.Fatalf("ParseLogoutToken without a config: %v", err)
	}
	f.cfg.Keys = nil
	if _, err := signals.ParseSET(sign(t, f.keys["a-ed"], setTyp, setClaims()), f.cfg); signals.Code(err) != signals.CodeInvalidKey {
		t.Fatalf("ParseSET without keys: %v", err)
	}
}

func TestCode(t *testing.T) {
	e := &signals.Error{Code: signals.CodeInvalidKey, Description: "x"}
	cases := []struct {
		err    error
		code   string
		status int
	}{
		{nil, "", 0},
		{e, signals.CodeInvalidKey, http.StatusBadRequest},
		{fmt.Errorf("push: %w", e), signals.CodeInvalidKey, http.StatusBadRequest},
		{&signals.Error{Code: signals.CodeAuthenticationFailed}, signals.CodeAuthenticationFailed, http.StatusUnauthorized},
		{&signals.Error{Code: signals.CodeAccessDenied}, signals.CodeAccessDenied, http.StatusForbidden},
		{errors.New("other"), signals.CodeInvalidRequest, 0},
	}
	for _, tc := range cases {
		if got := signals.Code(tc.err); got != tc.code {
			t.Errorf("Code(%v) = %q, want %q", tc.err, got, tc.code)
		}
		var se *signals.Error
		if errors.As(tc.err, &se) {
			if got := se.HTTPStatus(); got != tc.status {
				t.Errorf("HTTPStatus(%v) = %d, want %d", tc.err, got, tc.status)
			}
		}
	}
	if got, want := string(mustJSON(t, e)), `{"err":"invalid_key","description":"x"}`; got != want {
		t.Fatalf("json = %s, want %s", got, want)
	}
}
