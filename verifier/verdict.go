package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Verdict is the verifier's answer about one request, whichever front end
// asked: the sidecar's /v1/verify over HTTP, or Envoy's ext_authz over gRPC
// (package verifier/extauthz). Both take it from Decide, so that both give
// the same verdicts.
type Verdict struct {
	// Claims are the claims of the admitted token; nil when refused.
	Claims *Claims
	// Kid names the key that verified the token.
	Kid string
	// Err is the refusal, nil when admitted: an error of VerifyTarget,
	// ErrNotReady when no verdict was given. RefusalFor says how to
	// answer it.
	Err error
	// Stale: admitted from a state cut off from the bus for too long
	// (Config.Stale, a sidecar with on-stale allow).
	Stale bool
}

// Decide gives the verdict on the request t describes (VerifyTarget) and
// records it in the verification metrics.
func (v *Verifier) Decide(ctx context.Context, t Target) Verdict {
	done := v.Observe(ctx)
	c, kid, err := v.VerifyTarget(t)
	done(err)
	if err != nil {
		return Verdict{Err: err}
	}
	return Verdict{Claims: c, Kid: kid, Stale: v.Stale()}
}

// Identity returns the headers an admitted request goes to the
// application with: the identity headers (SetIdentity; a claim the token
// does not have gives an empty value) and, when d.Stale, HeaderStale. A
// refusal has none: nil.
func (d Verdict) Identity() http.Header {
	if d.Claims == nil {
		return nil
	}
	h := http.Header{}
	SetIdentity(h, d.Claims)
	if d.Stale {
		h.Set(HeaderStale, "true")
	}
	return h
}

// Refusal is the HTTP answer to a request the verifier did not admit.
type Refusal struct {
	// Status is 401, or 503 when no verdict was given (ErrNotReady).
	Status int
	// Header holds Cache-Control, Content-Type and either WWW-Authenticate
	// (401) or Retry-After (503).
	Header http.Header
	// Body is a JSON object with error and error_description.
	Body []byte
}

// RefusalFor returns the answer to a request refused with err (an error
// of Verify, Check, VerifyRequest or VerifyTarget): 503 with Retry-After
// when no verdict was given (ErrNotReady), else 401 with an RFC 6750
// challenge naming the reason.
func RefusalFor(err error) Refusal {
	h := http.Header{}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	if errors.Is(err, ErrNotReady) {
		h.Set("Retry-After", "1")
		return Refusal{Status: http.StatusServiceUnavailable, Header: h, Body: jsonBody(map[string]string{
			"error": "temporarily_unavailable", "error_description": ErrNotReady.Error(),
		})}
	}
	reason := Reason(err)
	if errors.Is(err, ErrMissing) {
		// RFC 6750 section 3.1: no error code when no credential was sent.
		h.Set("WWW-Authenticate", `Bearer realm="herald"`)
	} else {
		h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="herald", error="invalid_token", error_description=%q`, reason))
	}
	return Refusal{Status: http.StatusUnauthorized, Header: h, Body: jsonBody(map[string]string{
		"error": "invalid_token", "error_description": reason,
	})}
}

// jsonBody encodes a refusal's body as encoding/json's Encoder does, with
// a final newline; a map of strings always encodes.
func jsonBody(v map[string]string) []byte {
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

// WriteRefusal answers a request the verifier did not admit, err being
// the refusal: with RefusalFor(err).
func WriteRefusal(w http.ResponseWriter, err error) {
	r := RefusalFor(err)
	for k, vs := range r.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(r.Status)
	_, _ = w.Write(r.Body) // a write error means the client went away
}
