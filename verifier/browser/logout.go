package browser

import (
	"net/http"

	"github.com/heraldsec/herald/internal/httpserve"
)

// ServeOwn serves the browser session endpoints under OwnPrefix (POST
// LogoutPath); mount it there, beside the Sessions handler on "/".
func (b *Sessions) ServeOwn(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != LogoutPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpserve.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed", "error_description": "logout is a POST"})
		return
	}
	b.logout(w, r)
}

// logout ends the browser's session everywhere: at the issuer, which
// publishes its revocation to every verifier, and in the browser, whose
// cookie is cleared. Like any state-changing request it must come from the
// same origin, so another site cannot log the user out.
func (b *Sessions) logout(w http.ResponseWriter, r *http.Request) {
	if err := b.csrf.checkOrigin(r); err != nil {
		writeForbidden(w, err)
		return
	}
	var st *cookieState
	if cookies := takeCookie(r.Header); len(cookies) == 1 {
		if sent, err := b.seal.open(cookies[0]); err == nil {
			st = sent
		}
	}
	if err := b.csrf.checkToken(r, st); err != nil {
		writeForbidden(w, err)
		return
	}
	// The session is ended at the issuer by its id, proven by the cookie's
	// refresh token even if that was rotated since (by another replica, or
	// by a copy of the cookie), and even if this replica ended it already:
	// only the issuer's acknowledgement clears the cookie. Once it has
	// acknowledged, the same cookie is answered from memory: every user's
	// refreshes share this sidecar's rate limit at the issuer.
	if st != nil && !b.endedAtIssuer(st) {
		if err := b.end(r.Context(), st, "logout"); err != nil {
			// The cookie stays, so that the user can try again.
			w.Header().Set("Cache-Control", "no-store")
			httpserve.WriteJSON(w, http.StatusBadGateway, map[string]string{
				"error": "bad_gateway", "error_description": "the session could not be ended at the issuer; try again",
			})
			return
		}
	}
	http.SetCookie(w, clearedCookie())
	w.Header().Set("Cache-Control", "no-store")
	if acceptsHTML(r) {
		to := b.cfg.LoginPath
		if to == "" {
			to = "/"
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
