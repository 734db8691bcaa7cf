package signals

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/jsonstrict"
)

// header is the JOSE header of a logout token or SET. Members that would
// let the token choose its own key (jku, x5u, x5c, jwk), that change how
// it is processed (crit, b64, zip, cty) or that belong to JWE (enc) are
// read only to be refused; other unknown members are ignored (RFC 7515
// section 4).
type header struct {
	Alg string          `json:"alg"`
	Kid string          `json:"kid"`
	Typ json.RawMessage `json:"typ"`
	// Refused when present.
	Crit json.RawMessage `json:"crit"`
	Jku  json.RawMessage `json:"jku"`
	X5u  json.RawMessage `json:"x5u"`
	X5c  json.RawMessage `json:"x5c"`
	JWK  json.RawMessage `json:"jwk"`
	Cty  json.RawMessage `json:"cty"`
	B64  json.RawMessage `json:"b64"`
	Zip  json.RawMessage `json:"zip"`
	Enc  json.RawMessage `json:"enc"`
}

var headerNames = jsonstrict.Names(reflect.TypeFor[header]())

// token is a compact JWS split and decoded, its signature not yet checked.
type token struct {
	hdr       header
	typ       string // "" when absent
	hasTyp    bool
	payload   []byte
	signing   string // header.payload
	signature []byte
}

var enc = base64.RawURLEncoding.Strict()

// splitToken decodes the compact JWS raw, bounded by max bytes, and
// checks its header: everything that can be checked before the key is
// known.
func splitToken(raw string, max int) (*token, error) {
	if len(raw) > max {
		return nil, invalid("token of %d bytes exceeds the limit of %d", len(raw), max)
	}
	if raw == "" {
		return nil, invalid("empty token")
	}
	switch n := strings.Count(raw, "."); {
	case n == 4:
		return nil, invalid("encrypted tokens (JWE) are not accepted")
	case n != 2:
		return nil, invalid("not a compact JWS")
	}
	h, rest, _ := strings.Cut(raw, ".")
	p, s, _ := strings.Cut(rest, ".")
	hb, err := enc.DecodeString(h)
	if err != nil {
		return nil, invalid("header is not base64url")
	}
	if err := jsonstrict.CheckMembers(hb, headerNames); err != nil {
		return nil, invalid("header: %v", err)
	}
	t := &token{signing: raw[:len(h)+1+len(p)]}
	if err := json.Unmarshal(hb, &t.hdr); err != nil {
		return nil, invalid("header is not a JOSE header")
	}
	hd := &t.hdr
	for _, p := range []struct {
		name string
		v    json.RawMessage
	}{
		{"crit", hd.Crit}, {"jku", hd.Jku}, {"x5u", hd.X5u}, {"x5c", hd.X5c}, {"jwk", hd.JWK},
		{"cty", hd.Cty}, {"b64", hd.B64}, {"zip", hd.Zip}, {"enc", hd.Enc},
	} {
		if p.v != nil {
			return nil, invalid("header parameter %s is not accepted", p.name)
		}
	}
	if hd.Typ != nil {
		if err := json.Unmarshal(hd.Typ, &t.typ); err != nil {
			return nil, invalid("typ is not a string")
		}
		t.hasTyp = true
	}
	if !acceptedAlg(hd.Alg) {
		return nil, fail(CodeInvalidKey, "algorithm %q is not accepted (want RS256, PS256, ES256 or EdDSA)", short(hd.Alg))
	}
	if hd.Kid == "" || len(hd.Kid) > bus.MaxValueLen {
		return nil, fail(CodeInvalidKey, "kid must be 1 to %d bytes", bus.MaxValueLen)
	}
	if t.payload, err = enc.DecodeString(p); err != nil {
		return nil, invalid("payload is not base64url")
	}
	if t.signature, err = enc.DecodeString(s); err != nil || len(t.signature) == 0 {
		return nil, fail(CodeInvalidKey, "signature is missing or not base64url")
	}
	return t, nil
}

func acceptedAlg(alg string) bool {
	switch alg {
	case bus.AlgRS256, bus.AlgPS256, bus.AlgES256, bus.AlgEdDSA:
		return true
	}
	return false
}

// verify checks t's signature with the key named by its kid among iss's
// keys: the key's alg must be the header's, and its type fit the alg.
func (t *token) verify(iss string, keys KeyFunc) error {
	if keys == nil {
		return fail(CodeInvalidKey, "no keys are configured")
	}
	k, pub, ok := keys(iss, t.hdr.Kid)
	if !ok || pub == nil {
		return fail(CodeInvalidKey, "issuer %q has no key %q", short(iss), short(t.hdr.Kid))
	}
	if k.Alg != t.hdr.Alg {
		return fail(CodeInvalidKey, "key %q signs with %q, not %q", short(t.hdr.Kid), short(k.Alg), t.hdr.Alg)
	}
	var method jwt.SigningMethod
	switch p := pub.(type) {
	case *rsa.PublicKey:
		switch t.hdr.Alg {
		case bus.AlgRS256:
			method = jwt.SigningMethodRS256
		case bus.AlgPS256:
			method = jwt.SigningMethodPS256
		}
	case *ecdsa.PublicKey:
		if t.hdr.Alg == bus.AlgES256 && p.Curve == elliptic.P256() {
			method = jwt.SigningMethodES256
		}
	case ed25519.PublicKey:
		if t.hdr.Alg == bus.AlgEdDSA {
			method = jwt.SigningMethodEdDSA
		}
	}
	if method == nil {
		return fail(CodeInvalidKey, "key %q is not a %s key", short(t.hdr.Kid), t.hdr.Alg)
	}
	if err := method.Verify(t.signing, t.signature, pub); err != nil {
		return fail(CodeInvalidKey, "signature does not verify with key %q", short(t.hdr.Kid))
	}
	return nil
}

// typIs reports whether typ names the media type want ("logout+jwt"),
// compared case-insensitively, with or without its "application/" prefix
// (RFC 7515 section 4.1.9).
func typIs(typ, want string) bool {
	typ = strings.ToLower(typ)
	return typ == want || typ == "application/"+want
}

// audience is the aud claim: a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

// contains reports whether a holds one of want.
func (a audience) contains(want ...string) bool {
	for _, x := range a {
		for _, w := range want {
			if x == w {
				return true
			}
		}
	}
	return false
}

// numericDate is a JWT NumericDate (RFC 7519 section 2): a JSON number of
// seconds since the epoch, possibly fractional.
type numericDate struct{ time.Time }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errBadDate // json.Number would take a quoted number
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return errBadDate
	}
	sec, frac := math.Modf(f)
	d.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}

var errBadDate = &Error{Code: CodeInvalidRequest, Description: "not a NumericDate"}

// checkIssuedAt checks that iat is neither older than the maximum age nor
// further in the future than the leeway.
func (c *Config) checkIssuedAt(iat *numericDate) error {
	if iat == nil {
		return invalid("iat is required")
	}
	now := c.now()
	if iat.Before(now.Add(-c.maxAge())) {
		return invalid("iat is more than %s in the past", c.maxAge())
	}
	if iat.After(now.Add(c.leeway())) {
		return invalid("iat is more than %s in the future", c.leeway())
	}
	return nil
}

// checkString checks a string claim Herald keeps: at most bus.MaxValueLen
// bytes (JSON decoding has already refused invalid UTF-8).
func checkString(name, v string) error {
	if len(v) > bus.MaxValueLen {
		return invalid("%s is longer than %d bytes", name, bus.MaxValueLen)
	}
	return nil
}

// decodeClaims checks the payload's members (no duplicates, no names
// equal to known ones under case folding) and decodes it into v.
func decodeClaims(payload []byte, v any) error {
	if err := jsonstrict.CheckObject(payload, v); err != nil {
		return invalid("claims: %v", err)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return invalid("claim %s is not a %s", short(te.Field), te.Type)
		}
		if errors.Is(err, errBadDate) {
			return invalid("a date claim is not a NumericDate")
		}
		return invalid("claims are not well formed")
	}
	return nil
}
