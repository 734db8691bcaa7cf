package signals_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

// FuzzParseSET feeds ParseSET two tokens per input: the input itself, and
// a token whose payload is the input, signed with a key of source A, so
// that the claim and subject checks see arbitrary JSON behind a valid
// signature. Whatever it accepts must be a SET Herald can act on; whatever
// it refuses must carry an RFC 8935 code and a short description.
func FuzzParseSET(f *testing.F) {
	fx := newFixture(f)
	key := fx.keys["a-ed"]
	hdr := mustJSON(f, map[string]any{"alg": "EdDSA", "kid": "a-ed", "typ": "secevent+jwt"})
	subjects := []map[string]any{
		{"format": "iss_sub", "iss": issA, "sub": "u"},
		{"format": "opaque", "id": "s"},
		{"format": "email", "email": "e@example.com"},
		{"format": "jwt_id", "iss": issA, "jti": "t"},
		{"format": "complex", "user": map[string]any{"format": "opaque", "id": "u"}, "session": map[string]any{"format": "opaque", "id": "s"},
			"device": map[string]any{"format": "opaque", "id": "d"}},
		{"format": "phone_number", "phone_number": "+1"},
		{"subject_type": "iss_sub", "iss": issA, "sub": "u"},
	}
	for _, sub := range subjects {
		payload := mustJSON(f, with(setClaims(), map[string]any{"sub_id": sub}))
		f.Add(payload)
		f.Add([]byte(signRaw(f, key, hdr, payload)))
	}
	f.Add(mustJSON(f, with(setClaims(), map[string]any{"events": map[string]any{"a": map[string]any{}, "b": map[string]any{}}})))
	f.Add(mustJSON(f, with(setClaims(), map[string]any{"exp": 1, "sub": "x"})))
	f.Add([]byte(sign(f, key, map[string]any{"typ": "secevent+jwt", "crit": []string{"x"}}, setClaims())))
	f.Add([]byte("e30.e30.e30"))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(raw string) {
			s, err := signals.ParseSET(raw, fx.cfg)
			if err != nil {
				switch signals.Code(err) {
				case signals.CodeInvalidRequest, signals.CodeInvalidKey, signals.CodeInvalidIssuer, signals.CodeInvalidAudience:
				default:
					t.Fatalf("error without a parser code: %v", err)
				}
				if msg := err.Error(); len(msg) > 300 || !utf8.ValidString(msg) {
					t.Fatalf("error of %d bytes: %q", len(msg), msg)
				}
				return
			}
			if _, ok := fx.cfg.Source(s.Issuer); !ok {
				t.Fatalf("accepted iss %q, not a source", s.Issuer)
			}
			if s.JTI == "" || s.EventType == "" || s.Subject == nil || len(s.Event) == 0 {
				t.Fatalf("accepted an incomplete SET: %+v", s)
			}
			for _, email := range []string{"", "email"} {
				o, err := s.Revocation(nil, email)
				if err != nil {
					t.Fatal(err)
				}
				if o.Note == "" {
					t.Fatal("outcome without a note")
				}
				if !o.Revoke {
					continue
				}
				if !o.Kind.NeedsValue() || o.Value == "" || len(o.Value) > bus.MaxValueLen || bus.CheckIssuer(o.Issuer) != nil {
					t.Fatalf("bad revocation %+v from %+v", o, s.Subject)
				}
			}
		}
		check(string(data))
		if len(data) > 0 && strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
			check(signRaw(t, key, hdr, data))
		}
	})
}

// FuzzParseLogoutToken does for ParseLogoutToken what FuzzParseSET does
// for ParseSET: the input as a token, and the input as claims behind a
// valid signature of source A.
func FuzzParseLogoutToken(f *testing.F) {
	fx := newFixture(f)
	key := fx.keys["a-ed"]
	hdr := mustJSON(f, map[string]any{"alg": "EdDSA", "kid": "a-ed", "typ": "logout+jwt"})
	for _, changes := range []map[string]any{nil, {"sid": nil}, {"sub": nil}, {"nonce": "n"}, {"exp": now.Unix() - 60}, {"aud": []string{"x", "herald"}}} {
		payload := mustJSON(f, with(logoutClaims(), changes))
		f.Add(payload)
		f.Add([]byte(signRaw(f, key, hdr, payload)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(raw string) {
			l, err := signals.ParseLogoutToken(raw, fx.cfg)
			if err != nil {
				switch signals.Code(err) {
				case signals.CodeInvalidRequest, signals.CodeInvalidKey, signals.CodeInvalidIssuer, signals.CodeInvalidAudience:
				default:
					t.Fatalf("error without a parser code: %v", err)
				}
				if msg := err.Error(); len(msg) > 300 || !utf8.ValidString(msg) {
					t.Fatalf("error of %d bytes: %q", len(msg), msg)
				}
				return
			}
			if _, ok := fx.cfg.Source(l.Issuer); !ok || l.JTI == "" || l.SessionID == "" && l.Subject == "" {
				t.Fatalf("accepted an incomplete logout: %+v", l)
			}
			o := l.Revocation()
			if !o.Revoke || !o.Kind.NeedsValue() || o.Value == "" || len(o.Value) > bus.MaxValueLen || o.Issuer != l.Issuer {
				t.Fatalf("bad revocation %+v from %+v", o, l)
			}
		}
		check(string(data))
		if len(data) > 0 && strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
			check(signRaw(t, key, hdr, data))
		}
	})
}
