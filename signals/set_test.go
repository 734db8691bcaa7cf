package signals_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

var setTyp = map[string]any{"typ": "secevent+jwt"}

// setClaims returns valid SET claims from issuer A: a CAEP session-revoked
// event about an iss_sub subject.
func setClaims() map[string]any {
	return map[string]any{
		"iss":    issA,
		"aud":    "https://herald.example",
		"iat":    now.Unix() - 10,
		"jti":    "set-1",
		"txn":    "8675309",
		"sub_id": map[string]any{"format": "iss_sub", "iss": issA, "sub": "user-1"},
		"events": map[string]any{signals.EventSessionRevoked: map[string]any{"event_timestamp": now.Unix() - 20}},
	}
}

func TestParseSET_Accepted(t *testing.T) {
	f := newFixture(t)
	for _, kid := range []string{"a-ed", "a-es", "a-rs", "a-ps"} {
		for _, typ := range []string{"secevent+jwt", "application/secevent+jwt", "SecEvent+JWT"} {
			s, err := signals.ParseSET(sign(t, f.keys[kid], map[string]any{"typ": typ}, setClaims()), f.cfg)
			if err != nil {
				t.Fatalf("%s typ %s: %v", kid, typ, err)
			}
			if s.Issuer != issA || s.JTI != "set-1" || s.TxN != "8675309" || !s.IssuedAt.Equal(now.Add(-10e9)) ||
				s.EventType != signals.EventSessionRevoked || string(s.Event) != `{"event_timestamp":1799999980}` {
				t.Fatalf("%s: set = %+v", kid, s)
			}
			if want := (signals.Subject{Format: "iss_sub", Issuer: issA, Sub: "user-1"}); s.Subject == nil || s.Subject.Format != want.Format ||
				s.Subject.Issuer != want.Issuer || s.Subject.Sub != want.Sub {
				t.Fatalf("%s: subject = %+v", kid, s.Subject)
			}
		}
	}
	// The client id is an accepted audience too, and B's key verifies B's SETs.
	if _, err := signals.ParseSET(sign(t, f.keys["a-ed"], setTyp, with(setClaims(), map[string]any{"aud": []string{"x", "herald"}})), f.cfg); err != nil {
		t.Fatalf("client id as aud: %v", err)
	}
	if _, err := signals.ParseSET(sign(t, f.keys["b-ed"], setTyp, with(setClaims(), map[string]any{"iss": issB, "aud": "herald-at-b"})), f.cfg); err != nil {
		t.Fatalf("B's SET with B's key: %v", err)
	}
	// Google's RISC transmitter names the format subject_type.
	s, err := signals.ParseSET(sign(t, f.keys["a-ed"], setTyp, with(setClaims(), map[string]any{
		"sub_id": map[string]any{"subject_type": "iss_sub", "iss": issA, "sub": "user-2"}})), f.cfg)
	if err != nil || s.Subject.Sub != "user-2" {
		t.Fatalf("subject_type: %v %+v", err, s)
	}
}

func TestParseSET_Refused(t *testing.T) {
	f := newFixture(t)
	ed := f.keys["a-ed"]
	good := func(changes map[string]any) string { return sign(t, ed, setTyp, with(setClaims(), changes)) }
	stranger := newKey(t, bus.AlgEdDSA, "stranger")
	stranger.jwk.Kid = "a-ed"
	signing := b64(mustJSON(t, map[string]any{"alg": "HS256", "kid": "a-ed", "typ": "secevent+jwt"})) + "." + b64(mustJSON(t, setClaims()))
	mac := hmac.New(sha256.New, []byte(ed.jwk.X))
	mac.Write([]byte(signing))
	event := func(format string, members map[string]any) map[string]any {
		m := map[string]any{"format": format}
		for k, v := range members {
			m[k] = v
		}
		return map[string]any{"sub_id": m}
	}
	cases := map[string]struct {
		raw  string
		code string
	}{
		"untrusted key":                    {sign(t, stranger, setTyp, setClaims()), signals.CodeInvalidKey},
		"key of another configured issuer": {sign(t, f.keys["b-ed"], setTyp, setClaims()), signals.CodeInvalidKey},
		"issuer not configured":            {good(map[string]any{"iss": issOther}), signals.CodeInvalidIssuer},
		"wrong aud":                        {good(map[string]any{"aud": "https://elsewhere.example"}), signals.CodeInvalidAudience},
		"aud of another source":            {good(map[string]any{"aud": "herald-at-b"}), signals.CodeInvalidAudience},
		"stale iat":                        {good(map[string]any{"iat": now.Unix() - 301}), signals.CodeInvalidRequest},
		"future iat":                       {good(map[string]any{"iat": now.Unix() + 31}), signals.CodeInvalidRequest},
		"missing iat":                      {good(map[string]any{"iat": nil}), signals.CodeInvalidRequest},
		"missing jti":                      {good(map[string]any{"jti": nil}), signals.CodeInvalidRequest},
		"sub present":                      {good(map[string]any{"sub": "user-1"}), signals.CodeInvalidRequest},
		"exp present":                      {good(map[string]any{"exp": now.Unix() + 60}), signals.CodeInvalidRequest},
		"missing events":                   {good(map[string]any{"events": nil}), signals.CodeInvalidRequest},
		"no event":                         {good(map[string]any{"events": map[string]any{}}), signals.CodeInvalidRequest},
		"two events": {good(map[string]any{"events": map[string]any{
			signals.EventSessionRevoked: map[string]any{}, signals.EventCredentialChange: map[string]any{}}}), signals.CodeInvalidRequest},
		"event not an object":  {good(map[string]any{"events": map[string]any{signals.EventSessionRevoked: true}}), signals.CodeInvalidRequest},
		"events not an object": {good(map[string]any{"events": []string{signals.EventSessionRevoked}}), signals.CodeInvalidRequest},
		"no sub_id":            {good(map[string]any{"sub_id": nil}), signals.CodeInvalidRequest},
		"only an event-level subject": {good(map[string]any{"sub_id": nil, "events": map[string]any{signals.EventSessionRevoked: map[string]any{
			"subject": map[string]any{"format": "iss_sub", "iss": issA, "sub": "user-1"}}}}), signals.CodeInvalidRequest},
		"unsupported subject format": {good(event("phone_number", map[string]any{"phone_number": "+1 206 555 0123"})), signals.CodeInvalidRequest},
		"subject without format":     {good(map[string]any{"sub_id": map[string]any{"iss": issA, "sub": "u"}}), signals.CodeInvalidRequest},
		"iss_sub without sub":        {good(event("iss_sub", map[string]any{"iss": issA})), signals.CodeInvalidRequest},
		"iss_sub with a bad iss":     {good(event("iss_sub", map[string]any{"iss": "a b", "sub": "u"})), signals.CodeInvalidRequest},
		"opaque with an empty id":    {good(event("opaque", map[string]any{"id": ""})), signals.CodeInvalidRequest},
		"email not a string":         {good(event("email", map[string]any{"email": 7})), signals.CodeInvalidRequest},
		"jwt_id without jti":         {good(event("jwt_id", map[string]any{"iss": issA})), signals.CodeInvalidRequest},
		"subject value too long":     {good(event("opaque", map[string]any{"id": strings.Repeat("i", 257)})), signals.CodeInvalidRequest},
		"complex in complex": {good(event("complex", map[string]any{"user": map[string]any{"format": "complex",
			"user": map[string]any{"format": "opaque", "id": "u"}}})), signals.CodeInvalidRequest},
		"empty complex":                   {good(event("complex", nil)), signals.CodeInvalidRequest},
		"malformed complex user":          {good(event("complex", map[string]any{"user": map[string]any{"format": "iss_sub", "iss": issA}})), signals.CodeInvalidRequest},
		"complex member a string":         {good(event("complex", map[string]any{"device": "d"})), signals.CodeInvalidRequest},
		"typ absent":                      {sign(t, ed, nil, setClaims()), signals.CodeInvalidRequest},
		"typ JWT":                         {sign(t, ed, map[string]any{"typ": "JWT"}, setClaims()), signals.CodeInvalidRequest},
		"typ of a logout token":           {sign(t, ed, map[string]any{"typ": "logout+jwt"}, setClaims()), signals.CodeInvalidRequest},
		"alg none":                        {b64(mustJSON(t, map[string]any{"alg": "none", "typ": "secevent+jwt", "kid": "a-ed"})) + "." + b64(mustJSON(t, setClaims())) + ".", signals.CodeInvalidKey},
		"HS256 keyed with the public key": {signing + "." + b64(mac.Sum(nil)), signals.CodeInvalidKey},
		"crit":                            {sign(t, ed, map[string]any{"typ": "secevent+jwt", "crit": []string{"urn:example:x"}}, setClaims()), signals.CodeInvalidRequest},
		"jku":                             {sign(t, ed, map[string]any{"typ": "secevent+jwt", "jku": "https://attacker.example/jwks"}, setClaims()), signals.CodeInvalidRequest},
		"oversized token":                 {good(map[string]any{"pad": strings.Repeat("x", signals.DefaultMaxTokenSize)}), signals.CodeInvalidRequest},
		"duplicate event type": {signRaw(t, ed, mustJSON(t, map[string]any{"alg": "EdDSA", "kid": "a-ed", "typ": "secevent+jwt"}),
			[]byte(`{"iss":"`+issA+`","aud":"herald","iat":1799999990,"jti":"j","sub_id":{"format":"opaque","id":"x"},"events":{"`+
				signals.EventSessionRevoked+`":{},"`+signals.EventSessionRevoked+`":{}}}`)), signals.CodeInvalidRequest},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := signals.ParseSET(tc.raw, f.cfg)
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			if got := signals.Code(err); got != tc.code {
				t.Fatalf("code = %q (%v), want %q", got, err, tc.code)
			}
			t.Log(err)
			checkShort(t, err, tc.raw)
		})
	}
}

// TestParseSET_SmallerLimit checks that a configured size limit below the
// default holds.
func TestParseSET_SmallerLimit(t *testing.T) {
	f := newFixture(t)
	raw := sign(t, f.keys["a-ed"], setTyp, setClaims())
	f.cfg.MaxTokenSize = len(raw) - 1
	if _, err := signals.ParseSET(raw, f.cfg); signals.Code(err) != signals.CodeInvalidRequest {
		t.Fatalf("over the limit: %v", err)
	}
	f.cfg.MaxTokenSize = len(raw)
	if _, err := signals.ParseSET(raw, f.cfg); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}
