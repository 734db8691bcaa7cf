package verifier

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// HeaderStale is set, to "true", on verdicts given while the verifier is
// cut off from the bus for longer than its maximum staleness and answers
// from its last state (on-stale allow), and on requests the proxy forwards
// in that state.
const HeaderStale = "X-Herald-Stale"

// headerPrefix is the prefix of every header Herald sets for the upstream.
const headerPrefix = "x-herald-"

type claimsKey struct{}

// ClaimsFrom returns the claims of the token that admitted the request
// whose context is ctx, as set by Middleware (and by the sidecar's proxy).
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// WithClaims returns a copy of ctx carrying c, for tests of handlers that
// read ClaimsFrom.
func WithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// Middleware returns a handler that lets through only requests bearing a
// valid access token (RFC 6750 Authorization: Bearer) and calls next with
// the token's claims in the request context (read them with ClaimsFrom).
// Other requests get 401 with a WWW-Authenticate challenge naming the
// reason, or 503 with Retry-After while v gives no verdict (not caught up,
// or cut off from the bus with on-stale deny).
//
// When v tracks live requests (Config.Live, a sidecar's verifier), a
// request in flight is tracked with its claims: when a revocation matching its token is applied, its context is
// canceled, with a cause wrapping ErrRevoked (context.Cause). Handlers of
// long-lived responses (streams, WebSockets) must watch r.Context().
//
// The returned handler is safe for concurrent use.
func Middleware(v *Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := v.Observe(r.Context())
		c, kid, err := v.VerifyRequest(r, false)
		done(err)
		if err != nil {
			WriteRefusal(w, err)
			return
		}
		v.ServeAdmitted(w, r, c, kid, next)
	})
}

// ServeAdmitted calls next for a request admitted with claims c of a
// token signed with kid (as Check and VerifyRequest return them): the
// claims go in its context (ClaimsFrom), the response is marked with
// HeaderStale when the verifier is stale, and, with Config.Live, the
// request is tracked until it ends so that a matching revocation cancels
// it. Middleware uses it; so does a layer that admits requests by other
// means (a browser session's cookie).
func (v *Verifier) ServeAdmitted(w http.ResponseWriter, r *http.Request, c *Claims, kid string, next http.Handler) {
	if v.Stale() {
		w.Header().Set(HeaderStale, "true")
	}
	ctx := WithClaims(r.Context(), c)
	if live := v.cfg.Live; live != nil {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		lr := live.add(c, kid, cancel)
		defer live.remove(lr)
	}
	next.ServeHTTP(w, r.WithContext(ctx))
}

// IsHeraldHeader reports whether a header name would reach an application
// as one of Herald's: X-Herald-*, in any case, with '_' for '-' (CGI,
// PHP, WSGI and some proxies read X_Herald_Subject as X-Herald-Subject).
// Only the verifier may set such headers.
func IsHeraldHeader(name string) bool {
	if len(name) < len(headerPrefix) {
		return false
	}
	p := strings.ReplaceAll(strings.ToLower(name[:len(headerPrefix)]), "_", "-")
	return p == headerPrefix
}

// StripHeaders deletes every header that would reach an application as
// one of Herald's (X-Herald-*, in any case, with '_' for '-'): only the
// verifier may set them. A proxy calls it on every request it forwards.
func StripHeaders(h http.Header) {
	for k := range h {
		if IsHeraldHeader(k) {
			delete(h, k)
		}
	}
}

// SetIdentity sets the identity headers (HeaderSubject and the others) of
// c on h.
func SetIdentity(h http.Header, c *Claims) {
	h.Set(HeaderIssuer, c.Issuer)
	h.Set(HeaderSubject, c.Subject)
	h.Set(HeaderSession, c.SessionID)
	h.Set(HeaderClient, c.ClientID)
	h.Set(HeaderScope, c.Scope)
	h.Set(HeaderTenant, c.Tenant)
}

// headerSafe returns ErrMalformed naming the first claim of c that
// SetIdentity puts in a header but that no header carries unchanged: one
// with a control character (a line break, NUL, DEL; a tab inside is
// kept), which a proxy may pass on as a header of its own or drop, or
// with a space or tab at either end, which header parsers trim (" alice"
// would reach the application as alice). Such a token is refused
// whichever front end asks, so that no application reads another
// identity than the token's.
func headerSafe(c *Claims) error {
	for _, f := range [...]struct{ name, value string }{
		{"iss", c.Issuer}, {"sub", c.Subject}, {"sid", c.SessionID},
		{"client_id", c.ClientID}, {"scope", c.Scope}, {"tenant", c.Tenant},
	} {
		if !headerValue(f.value) {
			return fmt.Errorf("%w: %s cannot be a header value", ErrMalformed, f.name)
		}
	}
	return nil
}

// headerValue reports whether a header carries v unchanged.
func headerValue(v string) bool {
	if v != strings.Trim(v, " \t") {
		return false
	}
	for i := range len(v) {
		if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// Identity headers set on a verified request. Proxies copy them upstream.
// HeaderIssuer names the token's issuer: Herald's own, or a trusted
// external one, whose subjects, sessions and clients are its own.
const (
	HeaderIssuer  = "X-Herald-Issuer"
	HeaderSubject = "X-Herald-Subject"
	HeaderSession = "X-Herald-Session"
	HeaderClient  = "X-Herald-Client"
	HeaderScope   = "X-Herald-Scope"
	HeaderTenant  = "X-Herald-Tenant"
)

// BearerToken returns the token of an RFC 6750 Authorization: Bearer
// header. It returns ErrMissing when there is none and ErrMalformed when the
// header is not a single well-formed bearer credential.
func BearerToken(r *http.Request) (string, error) {
	tok, scheme, err := AccessToken(r)
	if err == nil && scheme != "Bearer" {
		return "", ErrMissing
	}
	return tok, err
}
