package signals_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

// logoutClaims returns valid logout token claims from issuer A.
func logoutClaims() map[string]any {
	return map[string]any{
		"iss":    issA,
		"aud":    "herald",
		"iat":    now.Unix() - 10,
		"jti":    "logout-1",
		"sid":    "sid-1",
		"sub":    "user-1",
		"events": map[string]any{signals.EventBackchannelLogout: map[string]any{}},
	}
}

func TestParseLogoutToken_Accepted(t *testing.T) {
	f := newFixture(t)
	for _, kid := range []string{"a-ed", "a-es", "a-rs", "a-ps"} {
		for _, typ := range []any{"logout+jwt", "application/logout+jwt", "JWT", "Logout+JWT", nil} {
			raw := sign(t, f.keys[kid], map[string]any{"typ": typ}, logoutClaims())
			l, err := signals.ParseLogoutToken(raw, f.cfg)
			if err != nil {
				t.Fatalf("%s typ %v: %v", kid, typ, err)
			}
			want := signals.Logout{Issuer: issA, Subject: "user-1", SessionID: "sid-1", JTI: "logout-1", IssuedAt: now.Add(-10e9)}
			if *l != want {
				t.Fatalf("%s: logout = %+v, want %+v", kid, *l, want)
			}
		}
	}
}

func TestLogout_Revocation(t *testing.T) {
	f := newFixture(t)
	cases := map[string]struct {
		changes map[string]any
		want    signals.Outcome
	}{
		"sid revokes the session": {nil, signals.Outcome{Revoke: true, Kind: bus.KindSession, Value: "sid-1", Issuer: issA}},
		"sub alone revokes the subject": {map[string]any{"sid": nil},
			signals.Outcome{Revoke: true, Kind: bus.KindSubject, Value: "user-1", Issuer: issA}},
		"sid alone revokes the session": {map[string]any{"sub": nil},
			signals.Outcome{Revoke: true, Kind: bus.KindSession, Value: "sid-1", Issuer: issA}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			l, err := signals.ParseLogoutToken(sign(t, f.keys["a-ed"], map[string]any{"typ": "logout+jwt"}, with(logoutClaims(), tc.changes)), f.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := l.Revocation()
			if got.Note == "" {
				t.Error("no note")
			}
			got.Note = ""
			if got != tc.want {
				t.Fatalf("outcome = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseLogoutToken_Refused(t *testing.T) {
	f := newFixture(t)
	ed := f.keys["a-ed"]
	typ := map[string]any{"typ": "logout+jwt"}
	good := func(changes map[string]any) string { return sign(t, ed, typ, with(logoutClaims(), changes)) }
	stranger := newKey(t, bus.AlgEdDSA, "stranger")
	stranger.jwk.Kid = "a-ed" // a known kid, another key
	unknown := newKey(t, bus.AlgEdDSA, "nobody")
	signing := b64(mustJSON(t, map[string]any{"alg": "HS256", "kid": "a-ed", "typ": "logout+jwt"})) + "." + b64(mustJSON(t, logoutClaims()))
	mac := hmac.New(sha256.New, []byte(ed.jwk.X)) // the public key as the HMAC secret
	mac.Write([]byte(signing))
	hs256 := signing + "." + b64(mac.Sum(nil))
	none := b64(mustJSON(t, map[string]any{"alg": "none", "kid": "a-ed"})) + "." + b64(mustJSON(t, logoutClaims())) + "."
	tampered := func() string {
		raw := good(nil)
		parts := strings.Split(raw, ".")
		parts[1] = b64(mustJSON(t, with(logoutClaims(), map[string]any{"sid": "someone-else"})))
		return strings.Join(parts, ".")
	}()
	cases := map[string]struct {
		raw  string
		code string
	}{
		"untrusted key with a known kid": {sign(t, stranger, typ, logoutClaims()), signals.CodeInvalidKey},
		"unknown kid":                    {sign(t, unknown, typ, logoutClaims()), signals.CodeInvalidKey},
		"key of another configured issuer": {sign(t, f.keys["b-ed"], typ, with(logoutClaims(), map[string]any{"aud": "herald-at-b"})),
			signals.CodeInvalidKey},
		"issuer not configured":           {good(map[string]any{"iss": issOther}), signals.CodeInvalidIssuer},
		"wrong aud":                       {good(map[string]any{"aud": []string{"someone", "https://herald.example"}}), signals.CodeInvalidAudience},
		"aud of another source":           {good(map[string]any{"aud": "herald-at-b"}), signals.CodeInvalidAudience},
		"missing aud":                     {good(map[string]any{"aud": nil}), signals.CodeInvalidAudience},
		"nonce present":                   {good(map[string]any{"nonce": "n-0S6_WzA2Mj"}), signals.CodeInvalidRequest},
		"nonce under another case":        {good(map[string]any{"Nonce": "n"}), signals.CodeInvalidRequest},
		"stale iat":                       {good(map[string]any{"iat": now.Unix() - 301}), signals.CodeInvalidRequest},
		"future iat":                      {good(map[string]any{"iat": now.Unix() + 31}), signals.CodeInvalidRequest},
		"missing iat":                     {good(map[string]any{"iat": nil}), signals.CodeInvalidRequest},
		"iat not a number":                {good(map[string]any{"iat": "1800000000"}), signals.CodeInvalidRequest},
		"exp passed":                      {good(map[string]any{"exp": now.Unix() - 31}), signals.CodeInvalidRequest},
		"no sid nor sub":                  {good(map[string]any{"sid": nil, "sub": nil}), signals.CodeInvalidRequest},
		"missing jti":                     {good(map[string]any{"jti": nil}), signals.CodeInvalidRequest},
		"jti too long":                    {good(map[string]any{"jti": strings.Repeat("j", 257)}), signals.CodeInvalidRequest},
		"missing events":                  {good(map[string]any{"events": nil}), signals.CodeInvalidRequest},
		"events without the logout":       {good(map[string]any{"events": map[string]any{signals.EventSessionRevoked: map[string]any{}}}), signals.CodeInvalidRequest},
		"logout event not an object":      {good(map[string]any{"events": map[string]any{signals.EventBackchannelLogout: "yes"}}), signals.CodeInvalidRequest},
		"typ of a SET":                    {sign(t, ed, map[string]any{"typ": "secevent+jwt"}, logoutClaims()), signals.CodeInvalidRequest},
		"typ of an access token":          {sign(t, ed, map[string]any{"typ": "at+jwt"}, logoutClaims()), signals.CodeInvalidRequest},
		"typ not a string":                {sign(t, ed, map[string]any{"typ": 1}, logoutClaims()), signals.CodeInvalidRequest},
		"alg none":                        {none, signals.CodeInvalidKey},
		"HS256 keyed with the public key": {hs256, signals.CodeInvalidKey},
		"alg other than the key's": {signRaw(t, f.keys["a-rs"], mustJSON(t, map[string]any{"alg": "PS256", "kid": "a-ps"}), mustJSON(t, logoutClaims())),
			signals.CodeInvalidKey},
		"alg RS256 naming the PS256 key": {signRaw(t, f.keys["a-rs"], mustJSON(t, map[string]any{"alg": "RS256", "kid": "a-ps"}), mustJSON(t, logoutClaims())),
			signals.CodeInvalidKey},
		"RS256 signature under the PS256 key's kid": {sign(t, f.keys["a-rs"], map[string]any{"kid": "a-ps", "alg": "PS256"}, logoutClaims()), signals.CodeInvalidKey},
		"missing kid":          {sign(t, ed, map[string]any{"kid": nil}, logoutClaims()), signals.CodeInvalidKey},
		"tampered payload":     {tampered, signals.CodeInvalidKey},
		"crit":                 {sign(t, ed, map[string]any{"crit": []string{"exp"}, "exp": 1}, logoutClaims()), signals.CodeInvalidRequest},
		"jku":                  {sign(t, ed, map[string]any{"jku": "https://attacker.example/jwks"}, logoutClaims()), signals.CodeInvalidRequest},
		"x5u":                  {sign(t, ed, map[string]any{"x5u": "https://attacker.example/cert"}, logoutClaims()), signals.CodeInvalidRequest},
		"x5c":                  {sign(t, ed, map[string]any{"x5c": []string{"MIIB"}}, logoutClaims()), signals.CodeInvalidRequest},
		"embedded jwk":         {sign(t, ed, map[string]any{"jwk": ed.jwk}, logoutClaims()), signals.CodeInvalidRequest},
		"oversized token":      {good(map[string]any{"pad": strings.Repeat("x", signals.DefaultMaxTokenSize)}), signals.CodeInvalidRequest},
		"JWE":                  {"a.b.c.d.e", signals.CodeInvalidRequest},
		"two parts":            {"a.b", signals.CodeInvalidRequest},
		"empty":                {"", signals.CodeInvalidRequest},
		"duplicate claim":      {signRaw(t, ed, mustJSON(t, typ2(ed)), []byte(`{"iss":"`+issA+`","aud":"herald","iat":1799999990,"jti":"j","sid":"a","sid":"b","events":{"`+signals.EventBackchannelLogout+`":{}}}`)), signals.CodeInvalidRequest},
		"header not base64url": {"!!!." + strings.SplitN(good(nil), ".", 2)[1], signals.CodeInvalidRequest},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			l, err := signals.ParseLogoutToken(tc.raw, f.cfg)
			if err == nil {
				t.Fatalf("accepted: %+v", l)
			}
			if got := signals.Code(err); got != tc.code {
				t.Fatalf("code = %q (%v), want %q", got, err, tc.code)
			}
			t.Log(err)
			checkShort(t, err, tc.raw)
		})
	}
}

func typ2(k testKey) map[string]any {
	return map[string]any{"alg": k.jwk.Alg, "kid": k.jwk.Kid, "typ": "logout+jwt"}
}

// checkShort fails unless err's text is short and quotes no part of the
// token's payload or signature.
func checkShort(t *testing.T, err error, raw string) {
	t.Helper()
	msg := err.Error()
	if len(msg) > 200 {
		t.Errorf("error of %d bytes: %s", len(msg), msg)
	}
	for i, part := range strings.Split(raw, ".") {
		if i > 0 && len(part) >= 16 && strings.Contains(msg, part[:16]) {
			t.Errorf("error quotes the token: %s", msg)
		}
	}
}
