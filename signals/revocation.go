package signals

import (
	"errors"
	"fmt"
	"strings"

	"github.com/heraldsec/herald/bus"
)

// Event type URIs of CAEP 1.0 and RISC 1.0 that cause a revocation by
// default (DefaultEvents).
const (
	CAEPPrefix = "https://schemas.openid.net/secevent/caep/event-type/"
	RISCPrefix = "https://schemas.openid.net/secevent/risc/event-type/"

	EventSessionRevoked       = CAEPPrefix + "session-revoked"
	EventCredentialChange     = CAEPPrefix + "credential-change"
	EventTokenClaimsChange    = CAEPPrefix + "token-claims-change"
	EventAccountDisabled      = RISCPrefix + "account-disabled"
	EventAccountPurged        = RISCPrefix + "account-purged"
	EventCredentialCompromise = RISCPrefix + "credential-compromise"
	EventSessionsRevoked      = RISCPrefix + "sessions-revoked"
)

// Action is what an event type causes.
type Action string

// Actions.
const (
	// ActionSession revokes the session the subject names: the session
	// member of a complex subject in opaque format, or a simple opaque
	// subject (CAEP 1.0 section 3.1 names the session that way). A
	// subject that names no session is revoked as with ActionSubject.
	ActionSession Action = "session"
	// ActionSubject revokes every token of the subject's user issued up
	// to now. A complex subject without a usable user member but with a
	// session is revoked as with ActionSession.
	ActionSubject Action = "subject"
	// ActionRecord revokes nothing: the signal is only recorded.
	ActionRecord Action = "record"
)

// Valid reports whether a is one of the three actions.
func (a Action) Valid() bool {
	return a == ActionSession || a == ActionSubject || a == ActionRecord
}

// DefaultEvents returns the actions of the event types that revoke by
// default; every other event type is recorded only.
func DefaultEvents() map[string]Action {
	return map[string]Action{
		EventSessionRevoked:       ActionSession,
		EventCredentialChange:     ActionSubject,
		EventTokenClaimsChange:    ActionSubject,
		EventAccountDisabled:      ActionSubject,
		EventAccountPurged:        ActionSubject,
		EventCredentialCompromise: ActionSubject,
		EventSessionsRevoked:      ActionSubject,
	}
}

// ValidateEvents reports every problem with a map of per-source event
// overrides: at most 64 entries, event types of 1 to 256 bytes, known
// actions.
func ValidateEvents(events map[string]Action) error {
	var errs []error
	if len(events) > maxEvents {
		errs = append(errs, fmt.Errorf("at most %d event overrides", maxEvents))
	}
	for typ, a := range events {
		if typ == "" || len(typ) > 256 {
			errs = append(errs, fmt.Errorf("event type %q must be 1 to 256 bytes", short(typ)))
		}
		if !a.Valid() {
			errs = append(errs, fmt.Errorf("event %q: unknown action %q (want session, subject or record)", short(typ), short(string(a))))
		}
	}
	return errors.Join(errs...)
}

// Outcome is what a signal asks Herald to do.
type Outcome struct {
	// Revoke is false when the signal is only recorded; Note says why.
	Revoke bool
	// Kind and Value name the revocation: a session by sid, a subject by
	// sub (or by email address, which verifiers match against the
	// issuer's email claim), or one token by jti.
	Kind  bus.Kind
	Value string
	// Issuer limits the revocation to the tokens this iss issued.
	Issuer string
	// Note says, for the audit record, why the signal led to this.
	Note string
}

// Revocation maps s to what Herald does about it, by its event type's
// action (events, a source's overrides, before DefaultEvents; ActionRecord
// for unknown types) and its subject. emailClaim is the source's
// Source.EmailClaim: without one, email subjects revoke nothing. It fails
// only when events is invalid. The package documentation has the table.
//
// For iss_sub and jwt_id subjects Outcome.Issuer is the subject's iss,
// which may differ from s.Issuer (a transmitter speaking for its
// authorization servers): a caller that must keep each source to its own
// tokens compares the two before revoking.
func (s *SET) Revocation(events map[string]Action, emailClaim string) (Outcome, error) {
	if err := ValidateEvents(events); err != nil {
		return Outcome{}, fmt.Errorf("signals: event overrides: %w", err)
	}
	action, ok := events[s.EventType]
	if !ok {
		if action, ok = DefaultEvents()[s.EventType]; !ok {
			action = ActionRecord
		}
	}
	name := s.EventType[strings.LastIndexByte(s.EventType, '/')+1:]
	if action == ActionRecord {
		return Outcome{Note: fmt.Sprintf("event %s revokes nothing", short(name))}, nil
	}
	o := s.target(action, emailClaim)
	o.Note = fmt.Sprintf("event %s: %s", short(name), o.Note)
	return o, nil
}

// target maps s's subject under action, which is session or subject.
func (s *SET) target(action Action, emailClaim string) Outcome {
	sub := s.Subject
	if sub.Format != FormatComplex {
		return s.simple(sub, action, emailClaim)
	}
	session := sub.Session != nil && sub.Session.Format == FormatOpaque
	var ignored string
	if len(sub.Others) > 0 {
		ignored = "; members " + strings.Join(sub.Others, ", ") + " not matched"
	}
	switch {
	case action == ActionSession && session:
		return Outcome{Revoke: true, Kind: bus.KindSession, Value: sub.Session.ID, Issuer: s.Issuer,
			Note: "session of a complex subject" + ignored}
	case sub.User != nil:
		o := s.simple(sub.User, ActionSubject, emailClaim)
		if o.Revoke || !session {
			o.Note = "user of a complex subject, " + o.Note + ignored
			return o
		}
		fallthrough
	case session:
		return Outcome{Revoke: true, Kind: bus.KindSession, Value: sub.Session.ID, Issuer: s.Issuer,
			Note: "session of a complex subject without a usable user" + ignored}
	}
	return Outcome{Note: "complex subject names no user or opaque session" + ignored}
}

// simple maps a subject identifier other than complex.
func (s *SET) simple(sub *Subject, action Action, emailClaim string) Outcome {
	switch sub.Format {
	case FormatIssSub:
		return Outcome{Revoke: true, Kind: bus.KindSubject, Value: sub.Sub, Issuer: sub.Issuer, Note: "iss_sub subject"}
	case FormatOpaque:
		if action == ActionSession {
			return Outcome{Revoke: true, Kind: bus.KindSession, Value: sub.ID, Issuer: s.Issuer, Note: "opaque session id"}
		}
		return Outcome{Revoke: true, Kind: bus.KindSubject, Value: sub.ID, Issuer: s.Issuer, Note: "opaque subject"}
	case FormatEmail:
		if emailClaim == "" {
			return Outcome{Note: "email subject, but no email claim is configured for the issuer"}
		}
		return Outcome{Revoke: true, Kind: bus.KindSubject, Value: sub.Email, Issuer: s.Issuer, Note: "email subject"}
	case FormatJWTID:
		return Outcome{Revoke: true, Kind: bus.KindToken, Value: sub.JTI, Issuer: sub.Issuer, Note: "jwt_id subject"}
	}
	return Outcome{Note: fmt.Sprintf("%s subject matches nothing", short(sub.Format))}
}
