// Package signals verifies the security signals Herald receives from the
// identity providers it trusts, and maps them to revocations: OpenID
// Connect back-channel logout tokens (ParseLogoutToken) and Security Event
// Tokens of the Shared Signals Framework 1.0, carrying CAEP 1.0 and RISC
// 1.0 events, pushed (RFC 8935) or polled (RFC 8936) (ParseSET).
//
// It is pure: no network, no state. The caller (the issuer) supplies the
// configured sources and their keys (Config, KeyFunc), detects replayed
// jtis, publishes the revocation an Outcome describes and records the
// signal. Refusals are *Error values carrying an RFC 8935 error code
// (Code), which a push endpoint returns as is.
//
// Both parsers check the JWS before anything is believed: size, compact
// form, header (no crit, jku, x5u, x5c, jwk, cty, b64, zip, enc), alg one
// of RS256, PS256, ES256 and EdDSA and equal to the key's, kid required,
// key looked up only among the keys of the token's iss, signature. The
// claims are decoded before (iss picks the keys) but judged only after the
// signature verifies.
//
// # From signals to revocations
//
// A logout token revokes its sid's session if it names one, else every
// token of its sub; either limited to the tokens of its iss.
//
// A SET's event type selects an action: a source's Events override, else
// DefaultEvents, else record. The defaults:
//
//	event type (CAEP 1.0, RISC 1.0)     action
//	caep  session-revoked               session
//	caep  credential-change             subject
//	caep  token-claims-change           subject
//	risc  account-disabled              subject
//	risc  account-purged                subject
//	risc  credential-compromise         subject
//	risc  sessions-revoked              subject
//	anything else                       record (revokes nothing)
//
// The action and the sub_id subject identifier then give the revocation,
// limited to the issuer in the last column ("SET" is the SET's iss):
//
//	subject (sub_id)              action session        action subject       limited to
//	iss_sub {iss, sub}            subject sub           subject sub          the subject's iss
//	opaque {id}                   session id            subject id           SET
//	email {email}                 subject email (*)     subject email (*)    SET
//	jwt_id {iss, jti}             token jti             token jti            the subject's iss
//	complex, session opaque {id}  session id            user, as above (**)  SET, or as above
//	complex, user only            user, as above        user, as above       as above
//	complex, neither              record                record
//	other formats                 refused by ParseSET (invalid_request)
//
// (*) Only when the source names its email claim (Source.EmailClaim), which
// verifiers match subject revocations against as well as sub; otherwise
// recorded. (**) The session when the user member is absent or revokes
// nothing. A complex subject's user member is read as a simple subject
// under action subject (an opaque user is a subject). Its other members
// (device, tenant, application...) narrow the event in CAEP, but Herald
// matches none of them: the revocation is wider than the event, never
// narrower, and the Note names the members left out.
package signals
