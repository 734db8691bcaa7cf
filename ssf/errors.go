package ssf

import (
	"fmt"
	"net/http"
	"time"
)

// Error is a refusal the HTTP layer turns into a status and a JSON body
// ({"error": Code, "error_description": Description}).
type Error struct {
	Status      int
	Code        string
	Description string
	// RetryAfter, when positive, is sent as Retry-After (a 429).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return fmt.Sprintf("ssf: %s: %s", e.Code, e.Description) }

func badRequest(format string, a ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: fmt.Sprintf(format, a...)}
}

// errNotFound is the answer for a stream that does not exist or is
// another receiver's: the two are not told apart.
var errNotFound = &Error{Status: http.StatusNotFound, Code: "not_found", Description: "no such stream"}
