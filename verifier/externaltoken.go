package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
)

// peekIssuer returns the iss of the unverified claims raw, which passed
// jsonstrict.CheckMembers unless rawErr says otherwise. It reports false
// when raw is not claims with a string iss, or has none.
func peekIssuer(raw []byte, rawErr error) (string, bool) {
	if rawErr != nil {
		return "", false
	}
	var p struct {
		Iss *string `json:"iss"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.Iss == nil || *p.Iss == "" {
		return "", false
	}
	return *p.Iss, true
}

// externalTypes are the typ values accepted from external issuers, in
// any case, besides none: providers write JWT or at+jwt (RFC 9068).
var externalTypes = []string{"JWT", "at+jwt", "application/at+jwt"}

// verifyExternal checks a token whose iss is the trusted external issuer
// of t, with raw its decoded claims: the header against t (algorithms,
// typ, no key-bearing members), the signature with that issuer's key of
// the header's kid, then the claims.
func (v *Verifier) verifyExternal(token, hdr string, raw []byte, t *bus.Trust) (*Claims, *Key, *bus.Trust, error) {
	h, err := parseHeader(hdr)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case !slices.Contains(t.Algorithms, h.Alg):
		return nil, nil, nil, fmt.Errorf("%w: %q from %s", ErrAlgorithm, h.Alg, t.Issuer)
	case h.Typ != "" && !slices.ContainsFunc(externalTypes, func(typ string) bool { return strings.EqualFold(h.Typ, typ) }):
		return nil, nil, nil, fmt.Errorf("%w: typ %q", ErrType, h.Typ)
	case h.Crit != nil:
		return nil, nil, nil, fmt.Errorf("%w: crit header not supported", ErrMalformed)
	case h.Jku != nil || h.X5u != nil || h.X5c != nil || h.Jwk != nil:
		return nil, nil, nil, fmt.Errorf("%w: key-bearing headers (jku, x5u, x5c, jwk) are refused", ErrMalformed)
	case h.Kid == "":
		return nil, nil, nil, fmt.Errorf("%w: kid is missing", ErrUnknownKey)
	}
	iss := t.Issuer
	key, t, ok := v.keys.External(iss, h.Kid)
	if !ok {
		if v.deny != nil && (v.deny.Contains(denyKey(bus.KindKey, h.Kid)) || v.deny.Contains(denyKeyFor(bus.KindKey, iss, h.Kid))) {
			return nil, nil, nil, fmt.Errorf("%w: key", ErrRevoked)
		}
		if v.unknown != nil && len(h.Kid) <= bus.MaxValueLen && utf8.ValidString(h.Kid) {
			v.unknown.ask(v.cfg.Now(), iss, h.Kid)
		}
		return nil, nil, nil, fmt.Errorf("%w: kid %q of %s", ErrUnknownKey, truncate(h.Kid, 64), iss)
	}
	if key.Algorithm != h.Alg {
		return nil, nil, nil, fmt.Errorf("%w: key %s is for %s, token says %s", ErrAlgorithm, truncate(key.ID, 64), key.Algorithm, h.Alg)
	}
	audiences := t.Audiences
	if len(audiences) == 0 {
		audiences = []string{v.cfg.Audience}
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{key.Algorithm}),
		jwt.WithIssuer(t.Issuer),
		jwt.WithAudience(audiences...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(v.cfg.Now),
	)
	ec := externalClaims{trust: t}
	if _, err := parser.ParseWithClaims(token, &ec, func(*jwt.Token) (any, error) { return key.Public, nil }); err != nil {
		return nil, nil, nil, mapJWTError(err)
	}
	c := &ec.Claims
	switch {
	case c.Subject == "":
		return nil, nil, nil, fmt.Errorf("%w: sub is missing", ErrMalformed)
	case c.IssuedAt == nil:
		return nil, nil, nil, fmt.Errorf("%w: iat is missing", ErrMalformed)
	case c.ExpiresAt == nil:
		return nil, nil, nil, fmt.Errorf("%w: exp is missing", ErrMalformed)
	}
	limit := t.MaxLifetime()
	if key.MaxLifetime > 0 && key.MaxLifetime < limit {
		limit = key.MaxLifetime
	}
	if life := c.ExpiresAt.Sub(c.IssuedAt.Time); life > limit+v.cfg.Leeway {
		return nil, nil, nil, fmt.Errorf("%w: lifetime %s exceeds the issuer's max %s", ErrMalformed, life, limit+v.cfg.Leeway)
	}
	return c, key, t, nil
}

// externalClaims decodes the claims of an external issuer's token: the
// registered ones with their types enforced, and the ones its trust entry
// names, mapped to Claims when they are strings. Other members, whatever
// their type, are ignored. jsonstrict.CheckMembers has bounded them to
// jsonstrict.MaxMembers, without duplicates.
type externalClaims struct {
	Claims
	trust *bus.Trust
}

var _ jwt.Claims = (*externalClaims)(nil)

// UnmarshalJSON implements json.Unmarshaler.
func (ec *externalClaims) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	// A back-channel logout token or a SET of the provider carries events;
	// no access token does (RFC 8725 section 3.12): one sent to Herald's
	// client id, untyped or typed JWT, must not pass as its user's token.
	if _, ok := m["events"]; ok {
		return errors.New("claim events: a security event or logout token is not an access token")
	}
	c := &ec.Claims
	for name, dst := range map[string]any{
		"iss": &c.Issuer, "sub": &c.Subject, "aud": &c.Audience, "jti": &c.ID,
		"exp": &c.ExpiresAt, "nbf": &c.NotBefore, "iat": &c.IssuedAt, "cnf": &c.Confirmation,
	} {
		if v, ok := m[name]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return fmt.Errorf("claim %s: %w", name, err)
			}
		}
	}
	str := func(name string) string {
		var s string
		if name == "" || json.Unmarshal(m[name], &s) != nil {
			return ""
		}
		return s
	}
	names := ec.trust.Claims
	c.SessionID = str(names.SessionClaim())
	for _, name := range names.ClientClaims() {
		if c.ClientID = str(name); c.ClientID != "" {
			break
		}
	}
	c.Tenant = str(names.Tenant)
	c.Email = str(names.Email)
	c.Scope = str("scope")
	if c.Scope == "" {
		c.Scope = scopeList(m["scp"])
	}
	return nil
}

// scopeList returns the scopes of an scp claim (Entra ID writes a string,
// Okta an array of strings) as one space-separated string.
func scopeList(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) != nil {
		return ""
	}
	return strings.Join(list, " ")
}

// keyRequests calls Config.OnUnknownKey at most once per issuer per
// interval.
type keyRequests struct {
	fn    func(iss, kid string)
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time // by issuer, at most MaxTrustedIssuers
}

func newKeyRequests(fn func(iss, kid string), every time.Duration) *keyRequests {
	return &keyRequests{fn: fn, every: every, last: make(map[string]time.Time)}
}

// ask calls fn for kid of iss unless it was called for iss less than an
// interval before now.
func (r *keyRequests) ask(now time.Time, iss, kid string) {
	r.mu.Lock()
	if t, ok := r.last[iss]; ok && now.Sub(t) < r.every && !now.Before(t) {
		r.mu.Unlock()
		return
	}
	if _, ok := r.last[iss]; !ok && len(r.last) >= MaxTrustedIssuers {
		for i, t := range r.last {
			if now.Sub(t) >= r.every {
				delete(r.last, i)
			}
		}
		if len(r.last) >= MaxTrustedIssuers {
			r.mu.Unlock()
			return
		}
	}
	r.last[iss] = now
	r.mu.Unlock()
	r.fn(iss, kid)
}
