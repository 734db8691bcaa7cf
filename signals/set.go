package signals

import (
	"encoding/json"
	"time"
)

// SET is a verified Security Event Token (RFC 8417) in the profile of the
// Shared Signals Framework 1.0: one event about one subject.
type SET struct {
	Issuer   string
	JTI      string
	IssuedAt time.Time
	// TxN is the txn claim, "" when absent: SETs caused by one underlying
	// event share it.
	TxN string
	// EventType is the event type URI, the one member of events.
	EventType string
	// Event is the event's JSON object, as received.
	Event json.RawMessage
	// Subject is the sub_id claim.
	Subject *Subject
}

type setClaims struct {
	Iss    string          `json:"iss"`
	Aud    audience        `json:"aud"`
	Iat    *numericDate    `json:"iat"`
	Jti    string          `json:"jti"`
	Txn    string          `json:"txn"`
	SubID  json.RawMessage `json:"sub_id"`
	Events json.RawMessage `json:"events"`
	// Refused when present (SSF 1.0 section 4.1).
	Sub json.RawMessage `json:"sub"`
	Exp json.RawMessage `json:"exp"`
}

// ParseSET verifies a SET pushed (RFC 8935) or polled (RFC 8936) from one
// of cfg's sources and returns its event and subject. It refuses, with an
// *Error:
//
//   - what ParseLogoutToken refuses in the JWS itself: size, JWE, header
//     parameters, algorithms, unknown kids, keys of another issuer, bad
//     signatures;
//   - a typ other than secevent+jwt (case-insensitive, with or without
//     "application/"): SSF 1.0 section 4.1.1 requires explicit typing;
//   - an iss that is not a configured source (invalid_issuer), an aud
//     naming neither the source's client id nor one of its audiences
//     (invalid_audience);
//   - a missing iat or one outside cfg's bounds, a missing jti;
//   - a sub or exp claim, which SSF 1.0 section 4.1.3 forbids in SETs;
//   - an events claim without exactly one member, or whose member is not
//     a JSON object (SSF 1.0 section 4.2.1 allows more only as aliases of
//     one event type: this package does not know aliases, so refuses
//     them);
//   - a missing top-level sub_id: SSF 1.0 section 2.1 requires it even
//     for the CAEP and RISC events that may repeat the subject inside the
//     event, whose subject member this package ignores;
//   - a subject identifier in a format other than iss_sub, opaque, email,
//     jwt_id and complex (invalid_request, "unsupported subject
//     identifier format"). A complex subject's members other than user and
//     session, and user or session members in other formats, are kept by
//     name only (Subject.Others).
//
// Replays (a jti seen before) are not detected here.
func ParseSET(raw string, cfg *Config) (*SET, error) {
	if cfg == nil {
		return nil, fail(CodeInvalidIssuer, "no sources are configured")
	}
	t, err := splitToken(raw, cfg.maxTokenSize())
	if err != nil {
		return nil, err
	}
	if !typIs(t.typ, "secevent+jwt") {
		return nil, invalid("typ %q is not secevent+jwt", short(t.typ))
	}
	var c setClaims
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
	if !c.Aud.contains(src.clientID()) && !c.Aud.contains(src.Audiences...) {
		return nil, fail(CodeInvalidAudience, "aud names no audience accepted from %q", short(c.Iss))
	}
	if err := cfg.checkIssuedAt(c.Iat); err != nil {
		return nil, err
	}
	if c.Jti == "" {
		return nil, invalid("jti is required")
	}
	for name, v := range map[string]string{"jti": c.Jti, "txn": c.Txn} {
		if err := checkString(name, v); err != nil {
			return nil, err
		}
	}
	if c.Sub != nil {
		return nil, invalid("a SET must not contain sub: its subject is sub_id")
	}
	if c.Exp != nil {
		return nil, invalid("a SET must not contain exp")
	}
	set := &SET{Issuer: c.Iss, JTI: c.Jti, IssuedAt: c.Iat.Time, TxN: c.Txn}
	if set.EventType, set.Event, err = oneEvent(c.Events); err != nil {
		return nil, err
	}
	if c.SubID == nil {
		return nil, invalid("sub_id is required")
	}
	if set.Subject, err = parseSubject(c.SubID, false); err != nil {
		return nil, err
	}
	return set, nil
}

// oneEvent returns the one member of the events claim.
func oneEvent(raw json.RawMessage) (string, json.RawMessage, error) {
	if raw == nil {
		return "", nil, invalid("events is required")
	}
	if err := checkObject(raw); err != nil {
		return "", nil, invalid("events: %v", err)
	}
	var events map[string]json.RawMessage
	if err := json.Unmarshal(raw, &events); err != nil {
		return "", nil, invalid("events is not a JSON object")
	}
	if len(events) != 1 {
		return "", nil, invalid("events holds %d events, want exactly one", len(events))
	}
	for typ, ev := range events {
		if typ == "" || len(typ) > 256 {
			return "", nil, invalid("event type must be 1 to 256 bytes")
		}
		if checkObject(ev) != nil {
			return "", nil, invalid("event %q is not a JSON object", short(typ))
		}
		return typ, ev, nil
	}
	panic("unreachable")
}
