package signals_test

import (
	"strings"
	"testing"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

// TestAttack_IssuerLookAlikes: an iss that differs from a configured one
// only by a trailing slash, case, Unicode normalisation, spaces or an
// escape is another issuer: refused as not configured, even when signed
// by a key that source holds under the same kid name.
func TestAttack_IssuerLookAlikes(t *testing.T) {
	f := newFixture(t)
	ed := f.keys["a-ed"]
	for name, iss := range map[string]string{
		"trailing slash":   issA + "/",
		"upper-case host":  strings.ToUpper(issA),
		"upper-case path":  "https://IDP-A.example",
		"leading space":    " " + issA,
		"fullwidth letter": "https://idp-\uff41.example",
		"combining mark":   "https://idp-a\u0301.example",
		"NUL suffix":       issA + "\x00",
	} {
		t.Run(name, func(t *testing.T) {
			for _, raw := range []string{
				sign(t, ed, map[string]any{"typ": "logout+jwt"}, with(logoutClaims(), map[string]any{"iss": iss})),
				sign(t, ed, setTyp, with(setClaims(), map[string]any{"iss": iss})),
			} {
				_, lerr := signals.ParseLogoutToken(raw, f.cfg)
				_, serr := signals.ParseSET(raw, f.cfg)
				if lerr == nil || serr == nil {
					t.Fatalf("accepted: logout %v, SET %v", lerr, serr)
				}
			}
		})
	}
}

// TestAttack_DuplicateMembers: a signed payload that names a claim twice,
// by the same bytes or by an escape that decodes to the same name, is
// refused, whichever of the two a decoder would keep: two iss (the last
// one another source's, signed with that source's key), two aud, two jti,
// two events, two sub_id members.
func TestAttack_DuplicateMembers(t *testing.T) {
	f := newFixture(t)
	b := f.keys["b-ed"]
	a := f.keys["a-ed"]
	lhdr := mustJSON(t, map[string]any{"alg": bus.AlgEdDSA, "kid": "b-ed", "typ": "logout+jwt"})
	shdr := mustJSON(t, map[string]any{"alg": bus.AlgEdDSA, "kid": "a-ed", "typ": "secevent+jwt"})
	ev := `"events":{"` + signals.EventBackchannelLogout + `":{}}`
	setEv := `"events":{"` + signals.EventCredentialChange + `":{}}`
	sub := `"sub_id":{"format":"opaque","id":"u"}`
	logouts := map[string]string{
		"two iss":         `{"iss":"` + issA + `","aud":"herald-at-b","iat":1799999990,"jti":"j","sid":"s",` + ev + `,"iss":"` + issB + `"}`,
		"escaped iss":     `{"iss":"` + issA + `","aud":"herald-at-b","iat":1799999990,"jti":"j","sid":"s",` + ev + `,"i\u0073s":"` + issB + `"}`,
		"two aud":         `{"iss":"` + issB + `","aud":"nobody","iat":1799999990,"jti":"j","sid":"s",` + ev + `,"aud":"herald-at-b"}`,
		"two jti":         `{"iss":"` + issB + `","aud":"herald-at-b","iat":1799999990,"jti":"j","jti":"k","sid":"s",` + ev + `}`,
		"case-folded iss": `{"ISS":"` + issA + `","iss":"` + issB + `","aud":"herald-at-b","iat":1799999990,"jti":"j","sid":"s",` + ev + `}`,
	}
	for name, payload := range logouts {
		t.Run("logout "+name, func(t *testing.T) {
			if l, err := signals.ParseLogoutToken(signRaw(t, b, lhdr, []byte(payload)), f.cfg); err == nil {
				t.Fatalf("accepted: %+v", l)
			}
		})
	}
	sets := map[string]string{
		"two iss":    `{"iss":"` + issB + `","aud":"herald","iat":1799999990,"jti":"j",` + sub + `,` + setEv + `,"iss":"` + issA + `"}`,
		"two aud":    `{"iss":"` + issA + `","aud":"nobody","iat":1799999990,"jti":"j",` + sub + `,` + setEv + `,"aud":"herald"}`,
		"two events": `{"iss":"` + issA + `","aud":"herald","iat":1799999990,"jti":"j",` + sub + `,"events":{"` + signals.EventCredentialChange + `":{},"` + signals.EventCredentialChange + `":{}}}`,
		"two sub_id": `{"iss":"` + issA + `","aud":"herald","iat":1799999990,"jti":"j",` + sub + `,` + setEv + `,"sub_id":{"format":"opaque","id":"v"}}`,
		"subject iss twice": `{"iss":"` + issA + `","aud":"herald","iat":1799999990,"jti":"j","sub_id":{"format":"iss_sub","iss":"` + issA +
			`","sub":"u","iss":"` + issB + `"},` + setEv + `}`,
		"escaped sub_id": `{"iss":"` + issA + `","aud":"herald","iat":1799999990,"jti":"j",` + sub + `,` + setEv + `,"sub\u005fid":{"format":"opaque","id":"v"}}`,
	}
	for name, payload := range sets {
		t.Run("SET "+name, func(t *testing.T) {
			if s, err := signals.ParseSET(signRaw(t, a, shdr, []byte(payload)), f.cfg); err == nil {
				t.Fatalf("accepted: %+v", s)
			}
		})
	}
	// The same payloads without the duplicate are accepted: the refusals
	// above are the duplicates'.
	if _, err := signals.ParseLogoutToken(signRaw(t, b, lhdr, []byte(`{"iss":"`+issB+`","aud":"herald-at-b","iat":1799999990,"jti":"j","sid":"s",`+ev+`}`)), f.cfg); err != nil {
		t.Fatalf("control logout: %v", err)
	}
	if _, err := signals.ParseSET(signRaw(t, a, shdr, []byte(`{"iss":"`+issA+`","aud":"herald","iat":1799999990,"jti":"j",`+sub+`,`+setEv+`}`)), f.cfg); err != nil {
		t.Fatalf("control SET: %v", err)
	}
}

// TestAttack_AudienceShapes: aud as a string or an array are read alike;
// other shapes (a number, an object, an array holding a non-string, an
// empty array, null) are refused rather than read as empty or matched.
func TestAttack_AudienceShapes(t *testing.T) {
	f := newFixture(t)
	ed := f.keys["a-ed"]
	for name, tc := range map[string]struct {
		aud any
		ok  bool
	}{
		"string":             {"herald", true},
		"array":              {[]any{"x", "herald"}, true},
		"number":             {42, false},
		"object":             {map[string]any{"herald": true}, false},
		"array with number":  {[]any{"herald", 1}, false},
		"empty array":        {[]any{}, false},
		"null":               {nil, false},
		"nested array":       {[]any{[]any{"herald"}}, false},
		"case of client id":  {"Herald", false},
		"client id + spaces": {" herald", false},
	} {
		t.Run(name, func(t *testing.T) {
			c := logoutClaims()
			c["aud"] = tc.aud
			_, err := signals.ParseLogoutToken(sign(t, ed, map[string]any{"typ": "logout+jwt"}, c), f.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want accepted %v", err, tc.ok)
			}
		})
	}
}

// TestAttack_AlgorithmConfusion: a SET (the logout cases are in
// TestParseLogoutToken_Refused) whose header alg is not the key's, or
// whose key type does not fit the alg, is refused as invalid_key.
func TestAttack_AlgorithmConfusion(t *testing.T) {
	f := newFixture(t)
	payload := mustJSON(t, setClaims())
	for name, tc := range map[string]struct {
		signer testKey
		hdr    map[string]any
	}{
		"PS256 signature under the RS256 key": {f.keys["a-ps"], map[string]any{"alg": "PS256", "kid": "a-rs"}},
		"RS256 signature under the PS256 key": {f.keys["a-rs"], map[string]any{"alg": "RS256", "kid": "a-ps"}},
		"ES256 header naming the EdDSA key":   {f.keys["a-es"], map[string]any{"alg": "ES256", "kid": "a-ed"}},
		"EdDSA header naming the ES256 key":   {f.keys["a-ed"], map[string]any{"alg": "EdDSA", "kid": "a-es"}},
		"B's key under A's iss":               {f.keys["b-ed"], map[string]any{"alg": "EdDSA", "kid": "b-ed"}},
		"ES384":                               {f.keys["a-es"], map[string]any{"alg": "ES384", "kid": "a-es"}},
		"alg in lower case":                   {f.keys["a-ed"], map[string]any{"alg": "eddsa", "kid": "a-ed"}},
	} {
		t.Run(name, func(t *testing.T) {
			tc.hdr["typ"] = "secevent+jwt"
			_, err := signals.ParseSET(signRaw(t, tc.signer, mustJSON(t, tc.hdr), payload), f.cfg)
			if signals.Code(err) != signals.CodeInvalidKey {
				t.Fatalf("err = %v, want invalid_key", err)
			}
		})
	}
}
