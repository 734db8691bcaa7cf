package verifier

import "errors"

// Error is a reason a token is refused. Verify returns errors that wrap one
// of the sentinel values below; use errors.Is to branch and Reason to get
// the code the sidecar reports.
type Error struct {
	// Reason is the short code named in WWW-Authenticate and logs.
	Reason string
	msg    string
}

func (e *Error) Error() string { return e.msg }

// Reasons a token is refused. The Reason codes are part of the sidecar's
// public contract.
var (
	ErrMissing      = &Error{"missing_token", "verifier: no bearer token"}
	ErrMalformed    = &Error{"malformed", "verifier: malformed token"}
	ErrAlgorithm    = &Error{"algorithm_not_allowed", "verifier: algorithm not allowed"}
	ErrType         = &Error{"wrong_type", "verifier: token type is not at+jwt"}
	ErrUnknownKey   = &Error{"unknown_key", "verifier: unknown signing key"}
	ErrBadSignature = &Error{"bad_signature", "verifier: bad signature"}
	ErrExpired      = &Error{"expired", "verifier: token expired"}
	ErrNotYetValid  = &Error{"not_yet_valid", "verifier: token not yet valid"}
	ErrIssuer       = &Error{"wrong_issuer", "verifier: wrong issuer"}
	ErrAudience     = &Error{"wrong_audience", "verifier: wrong audience"}
	ErrRevoked      = &Error{"revoked", "verifier: token revoked"}
	// ErrNotReady means the verifier has not caught up with the revocation
	// stream and gives no verdict; the sidecar answers 503.
	ErrNotReady = &Error{"not_ready", "verifier: not caught up with the revocation stream"}
)

// Reason returns the reason code of err, or "invalid_token" when err wraps
// no *Error.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return "invalid_token"
}
