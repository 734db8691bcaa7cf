package signals

import (
	"encoding/json"
	"time"

	"github.com/heraldsec/herald/bus"
)

// EventBackchannelLogout is the events member that makes a JWT an OpenID
// Connect back-channel logout token (Back-Channel Logout 1.0 section 2.4).
const EventBackchannelLogout = "http://schemas.openid.net/event/backchannel-logout"

// Logout is a verified back-channel logout token: the provider ended
// session SessionID, or, without one, every session of Subject.
type Logout struct {
	Issuer    string
	Subject   string // "" when the token names only a session
	SessionID string // "" when the token names only a subject
	JTI       string
	IssuedAt  time.Time
}

type logoutClaims struct {
	Iss    string                     `json:"iss"`
	Sub    string                     `json:"sub"`
	Aud    audience                   `json:"aud"`
	Iat    *numericDate               `json:"iat"`
	Exp    *numericDate               `json:"exp"`
	Jti    string                     `json:"jti"`
	Sid    string                     `json:"sid"`
	Events map[string]json.RawMessage `json:"events"`
	Nonce  json.RawMessage            `json:"nonce"`
}

// ParseLogoutToken verifies an OpenID Connect back-channel logout token
// (Back-Channel Logout 1.0 sections 2.4 and 2.6) from one of cfg's
// sources and returns what it asks. It refuses, with an *Error:
//
//   - a token over cfg's size limit, a JWE, or anything but a compact JWS;
//   - a typ other than logout+jwt (recommended by the specification) or
//     JWT; an absent typ is accepted, as the specification allows;
//   - crit, jku, x5u, x5c, jwk, cty, b64, zip and enc header parameters;
//   - an alg other than RS256, PS256, ES256 and EdDSA, or other than the
//     key's; a missing kid; a kid that names no key of the token's iss
//     (keys are looked up by iss only); a signature that does not verify;
//   - an iss that is not a configured source (invalid_issuer), an aud
//     without the source's client id (invalid_audience);
//   - a missing iat, one older than cfg's maximum age or further in the
//     future than its leeway; an exp, when present, passed by more than
//     the leeway (the final specification requires exp; tokens of
//     providers that omit it are accepted);
//   - a missing jti; an events claim without the back-channel logout
//     member, or whose value is not a JSON object; neither sid nor sub;
//     a nonce claim, which the specification forbids;
//   - duplicate or case-folded claim names, and values Herald cannot keep
//     (longer than bus.MaxValueLen).
//
// Replays (a jti seen before) are not detected here.
func ParseLogoutToken(raw string, cfg *Config) (*Logout, error) {
	if cfg == nil {
		return nil, fail(CodeInvalidIssuer, "no sources are configured")
	}
	t, err := splitToken(raw, cfg.maxTokenSize())
	if err != nil {
		return nil, err
	}
	if t.hasTyp && !typIs(t.typ, "logout+jwt") && !typIs(t.typ, "jwt") {
		return nil, invalid("typ %q is not logout+jwt", short(t.typ))
	}
	var c logoutClaims
	if err := decodeClaims(t.payload, &c); err != nil {
		return nil, err
	}
	src, ok := cfg.Source(c.Iss)
	if !ok {
		return nil, fail(CodeInvalidIssuer, "issuer %q is not configured", short(c.Iss))
	}
	if err := t.verify(c.Iss, cfg.Keys); err != nil {
		return nil, err
	}
	if !c.Aud.contains(src.clientID()) {
		return nil, fail(CodeInvalidAudience, "aud does not contain the client id %q", short(src.clientID()))
	}
	if err := cfg.checkIssuedAt(c.Iat); err != nil {
		return nil, err
	}
	if c.Exp != nil && c.Exp.Add(cfg.leeway()).Before(cfg.now()) {
		return nil, invalid("token expired")
	}
	if c.Jti == "" {
		return nil, invalid("jti is required")
	}
	ev, ok := c.Events[EventBackchannelLogout]
	if !ok {
		return nil, invalid("events has no %s member", EventBackchannelLogout)
	}
	if err := checkObject(ev); err != nil {
		return nil, invalid("the back-channel logout event is not a JSON object")
	}
	if c.Sid == "" && c.Sub == "" {
		return nil, invalid("neither sid nor sub is present")
	}
	if c.Nonce != nil {
		return nil, invalid("a logout token must not contain nonce")
	}
	for name, v := range map[string]string{"jti": c.Jti, "sid": c.Sid, "sub": c.Sub} {
		if err := checkString(name, v); err != nil {
			return nil, err
		}
	}
	return &Logout{Issuer: c.Iss, Subject: c.Sub, SessionID: c.Sid, JTI: c.Jti, IssuedAt: c.Iat.Time}, nil
}

// Revocation returns what l asks: the revocation of session SessionID if
// the token names one, else of every token of Subject, limited in either
// case to the tokens l's issuer issued.
func (l *Logout) Revocation() Outcome {
	if l.SessionID != "" {
		return Outcome{Revoke: true, Kind: bus.KindSession, Value: l.SessionID, Issuer: l.Issuer,
			Note: "back-channel logout of a session"}
	}
	return Outcome{Revoke: true, Kind: bus.KindSubject, Value: l.Subject, Issuer: l.Issuer,
		Note: "back-channel logout of every session of a subject"}
}
