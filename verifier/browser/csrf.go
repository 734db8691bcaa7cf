package browser

import (
	"errors"
	"net/http"

	"github.com/heraldsec/herald/internal/httpserve"
)

// CSRF headers of cookie sessions.
const (
	// HeaderCSRF carries the browser session's CSRF token to the upstream,
	// which embeds it in its pages (a form field or a meta tag that the
	// page's script copies into HeaderCSRFToken).
	HeaderCSRF = "X-Herald-Csrf"
	// HeaderCSRFToken is where a state-changing request sends the token
	// back, when its browser sends neither Sec-Fetch-Site nor Origin.
	HeaderCSRFToken = "X-CSRF-Token"
)

// Why a state-changing cookie request is refused (403).
var (
	errCrossSite   = errors.New("verifier: cross-origin request refused")
	errCSRFMissing = errors.New("verifier: state-changing request without Sec-Fetch-Site or Origin needs the session's " + HeaderCSRFToken)
)

// csrfGuard protects cookie sessions from cross-site request forgery. A
// state-changing request (any method but GET, HEAD, OPTIONS) passes when
// the browser says it comes from the same origin: Sec-Fetch-Site
// same-origin or none (Fetch Metadata), else an Origin whose host is the
// request's Host (net/http.CrossOriginProtection). A request with neither
// header, from an old browser or a script, must carry the session's CSRF
// token instead. It is safe for concurrent use.
type csrfGuard struct {
	cop  *http.CrossOriginProtection
	seal *sealer
}

func newCSRFGuard(seal *sealer) *csrfGuard {
	return &csrfGuard{cop: http.NewCrossOriginProtection(), seal: seal}
}

// checkOrigin refuses a state-changing request that a browser marks as
// coming from another origin. It needs no session, so it also guards the
// login handler against login CSRF.
func (g *csrfGuard) checkOrigin(r *http.Request) error {
	if g.cop.Check(r) != nil {
		return errCrossSite
	}
	return nil
}

// checkToken refuses a state-changing request of session st that neither
// Sec-Fetch-Site nor Origin vouch for and that lacks st's CSRF token. Call
// it after checkOrigin. Without a session there is nothing to forge.
func (g *csrfGuard) checkToken(r *http.Request, st *cookieState) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if st == nil || r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != "" {
		return nil
	}
	tok := r.Header.Values(HeaderCSRFToken)
	if len(tok) != 1 || !g.seal.checkCSRFToken(st.Handle, tok[0]) {
		return errCSRFMissing
	}
	return nil
}

// writeForbidden answers a request refused as cross-site.
func writeForbidden(w http.ResponseWriter, err error) {
	w.Header().Set("Cache-Control", "no-store")
	httpserve.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "error_description": err.Error()})
}
