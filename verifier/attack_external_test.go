package verifier

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
)

// TestAttackExternal_LogoutTokenIsNoAccessToken: a provider's back-channel
// logout token (OpenID Connect Back-Channel Logout 1.0) for Herald's
// client id, typed JWT or untyped as the specification allows, is not an
// access token: its events claim marks it, and a verifier whose audience
// is that client id (both default to "herald") refuses it. Logout tokens
// are kept in the audit trail; replayed against a sidecar they must not
// pass as the user's access token.
func TestAttackExternal_LogoutTokenIsNoAccessToken(t *testing.T) {
	e := newExtEnv(t, nil, nil)
	now := time.Now()
	logout := map[string]any{"iss": idpIssuer, "aud": testAudience, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": randomID(), "sub": "alice", "sid": "s-1",
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	for name, hdr := range map[string]func(h map[string]any){
		"typ JWT":    nil,
		"typ absent": func(h map[string]any) { delete(h, "typ") },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.v.Verify(t.Context(), e.idp.Token(t, bus.AlgES256, logout, hdr))
			checkVerdict(t, err, ErrMalformed)
		})
	}
	t.Run("typ logout+jwt", func(t *testing.T) {
		_, err := e.v.Verify(t.Context(), e.idp.Token(t, bus.AlgES256, logout, func(h map[string]any) { h["typ"] = "logout+jwt" }))
		checkVerdict(t, err, ErrType)
	})
	t.Run("an access token with an events-like claim of another name", func(t *testing.T) {
		c := e.idp.Claims(now)
		c["event"] = map[string]any{"x": 1}
		_, err := e.v.Verify(t.Context(), e.idp.Token(t, bus.AlgES256, c, nil))
		checkVerdict(t, err, nil)
	})
}

// TestAttackExternal_AlgorithmAndIssuerConfusion: with RS256 and PS256
// both accepted from a provider, its RSA key published for one of them
// verifies no token claiming the other; iss values that differ from the
// trusted one by case, an escape that decodes to a second iss, or a
// non-string type (then read as a token of Herald, without a
// provider's key) are refused.
func TestAttackExternal_AlgorithmAndIssuerConfusion(t *testing.T) {
	e := newExtEnv(t, nil, nil)
	now := time.Now()
	claims := func(edit func(c map[string]any)) map[string]any {
		c := e.idp.Claims(now)
		if edit != nil {
			edit(c)
		}
		return c
	}
	escapedIss := func() string {
		body := string(mustJSON(t, claims(func(c map[string]any) { delete(c, "iss") })))
		body = strings.Replace(body, "{", `{"iss":"`+otherIssuer+`","i\u0073s":"`+idpIssuer+`",`, 1)
		h := b64(mustJSON(t, map[string]any{"alg": bus.AlgES256, "kid": e.idp.Kid(bus.AlgES256), "typ": "JWT"}))
		input := h + "." + b64([]byte(body))
		sig, err := jwt.SigningMethodES256.Sign(input, e.idp.Es)
		if err != nil {
			t.Fatal(err)
		}
		return input + "." + b64(sig)
	}
	for _, tc := range []struct {
		name  string
		token string
		want  *Error
	}{
		{"PS256 under the RS256 key's kid", e.idp.Token(t, bus.AlgPS256, claims(nil), func(h map[string]any) { h["kid"] = e.idp.Kid(bus.AlgRS256) }), ErrAlgorithm},
		{"RS256 under the PS256 key's kid", e.idp.Token(t, bus.AlgRS256, claims(nil), func(h map[string]any) { h["kid"] = e.idp.Kid(bus.AlgPS256) }), ErrAlgorithm},
		{"upper-case issuer", e.idp.Token(t, bus.AlgES256, claims(func(c map[string]any) { c["iss"] = strings.ToUpper(idpIssuer) }), nil), ErrIssuer},
		{"escaped second iss", escapedIss(), ErrMalformed},
		{"iss as an array", e.idp.Token(t, bus.AlgES256, claims(func(c map[string]any) { c["iss"] = []string{idpIssuer} }), nil), ErrType}, // read as Herald's, whose typ is at+jwt
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.v.Verify(t.Context(), tc.token)
			checkVerdict(t, err, tc.want)
		})
	}
}
