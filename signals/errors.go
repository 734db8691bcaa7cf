package signals

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes of RFC 8935 section 2.4 (the "err" member of a push error
// response), which ParseLogoutToken and ParseSET report too.
const (
	// CodeInvalidRequest: the token is malformed, wrongly typed, misses a
	// required claim, carries a forbidden one or names a subject in an
	// unsupported format.
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidKey: the kid names no key of the issuer, the algorithm is
	// not the key's or not accepted, or the signature does not verify.
	CodeInvalidKey = "invalid_key"
	// CodeInvalidIssuer: iss is not a configured source.
	CodeInvalidIssuer = "invalid_issuer"
	// CodeInvalidAudience: aud names none of the source's accepted
	// audiences.
	CodeInvalidAudience = "invalid_audience"
	// CodeAuthenticationFailed: the sender did not authenticate (reported
	// by the HTTP endpoint, not by this package's parsers).
	CodeAuthenticationFailed = "authentication_failed"
	// CodeAccessDenied: the sender is not allowed to deliver this token
	// (reported by the HTTP endpoint, not by this package's parsers).
	CodeAccessDenied = "access_denied"
)

// Error is why a logout token or SET was refused: an RFC 8935 error code
// and a short description. It marshals to the RFC 8935 error response
// body. Descriptions quote at most short, truncated pieces of the token
// (an iss, a kid, a claim name), never the token itself.
type Error struct {
	Code        string `json:"err"`
	Description string `json:"description"`
}

// Error implements error.
func (e *Error) Error() string { return "signals: " + e.Code + ": " + e.Description }

// HTTPStatus returns the status of the RFC 8935 response for e: 401 for
// authentication_failed, 403 for access_denied, 400 otherwise.
func (e *Error) HTTPStatus() int {
	switch e.Code {
	case CodeAuthenticationFailed:
		return http.StatusUnauthorized
	case CodeAccessDenied:
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

// Code returns the RFC 8935 error code of err: "" for nil, the code of an
// *Error in err's chain, and invalid_request for any other error.
func Code(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInvalidRequest
}

func fail(code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *Error { return fail(CodeInvalidRequest, format, args...) }

// short returns s cut to at most 64 bytes, for an error description.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
