package issuer

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Error is an API error: an HTTP status, an OAuth-style error code and a
// description safe to show the caller.
type Error struct {
	Status      int
	Code        string
	Description string
	// RetryAfter, if positive, is sent as Retry-After (a 429 or 503).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return "issuer: " + e.Code + ": " + e.Description }

// badRequest returns a 400 invalid_request error.
func badRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

// errUnavailable is returned when an event could not be acknowledged by
// JetStream: the request changed nothing visible.
var errUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
	Description: "the event bus did not acknowledge the change; nothing was done, retry"}

// errCatchingUp is returned instead of minting while the replica's
// revocation follower has not caught up with the stream: it may not know
// yet of a revocation that covers what it would mint.
var errCatchingUp = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
	Description: "this issuer is catching up with the revocation stream; retry shortly", RetryAfter: time.Second}

// errOwnEventKeyRevoked refuses to mint with an event key a pinned root
// key revoked: verifiers refuse what it signs.
var errOwnEventKeyRevoked = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
	Description: "this issuer's event key was revoked by a root key; restart it with a new certified event key"}

var errUnauthorized = &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
	Description: "a valid admin bearer token is required"}

// apiError maps any error to the API error reported to the client.
// Internal details are logged, not sent. A change that was committed is
// answered as recorded whatever failed after the commit, even an error
// that alone would say nothing was done.
func apiError(err error) *Error {
	var e *Error
	switch {
	case errors.Is(err, errNotPublished):
		return &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
			Description: "recorded, but the event bus did not acknowledge it yet; it will be published and enforced when the bus is back"}
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errUnavailable
	}
	return &Error{Status: http.StatusInternalServerError, Code: "server_error", Description: "internal error"}
}
