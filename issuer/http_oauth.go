package issuer

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/internal/ratelimit"
	"github.com/heraldsec/herald/verifier"
)

// parseForm reads a bounded application/x-www-form-urlencoded body.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, _ := strings.Cut(ct, ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		return badRequest("content type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return badRequest("malformed form body")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			// RFC 6749 section 3.2: parameters must not be repeated.
			return badRequest(fmt.Sprintf("parameter %s is repeated", k))
		}
	}
	return nil
}

// limited parses the form, refuses over-long parameters, and applies the
// rate limits (RFC 6585 429 with Retry-After) before next runs: per source
// address (IPv6 by /64), and per client for registered clients only, so
// that no caller-chosen string becomes a key the issuer keeps.
func (h *handler) limited(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(w, r); err != nil {
			h.writeError(w, err)
			return
		}
		if err := checkParams(r); err != nil {
			h.writeError(w, err)
			return
		}
		tooMany := func(wait time.Duration) {
			retryAfter(w, wait)
			h.writeError(w, &Error{Status: http.StatusTooManyRequests, Code: "slow_down",
				Description: "too many requests; retry later"})
		}
		if ok, wait := h.s.limits.perAddr.Allow(ratelimit.Source(r.RemoteAddr)); !ok {
			tooMany(wait)
			return
		}
		client := r.PostForm.Get("client_id")
		if a, err := parseClientAuth(r); err == nil && a.ID != "" {
			client = a.ID
		}
		if client != "" && h.s.limits.perClient != nil {
			if _, registered, err := h.s.client(client); err != nil {
				h.writeError(w, err)
				return
			} else if registered {
				if ok, wait := h.s.limits.perClient.Allow(client); !ok {
					tooMany(wait)
					return
				}
			}
		}
		next(w, r)
	}
}

// token is the token endpoint (RFC 6749 section 3.2).
func (h *handler) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Pragma", "no-cache")
	auth, err := parseClientAuth(r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	proofs := r.Header.Values(verifier.HeaderDPoP)
	if len(proofs) > 1 {
		h.writeError(w, invalidDPoP("more than one DPoP header"))
		return
	}
	proof := ""
	if len(proofs) == 1 {
		proof = proofs[0]
	}
	var resp *TokenResponse
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "refresh_token":
		if sc := r.PostForm.Get("scope"); sc != "" {
			h.writeError(w, &Error{Status: http.StatusBadRequest, Code: "invalid_scope",
				Description: "a refresh keeps the session's scope"})
			return
		}
		resp, err = h.s.refresh(r.Context(), r.PostForm.Get("refresh_token"), auth, proof)
	case "client_credentials":
		resp, err = h.s.clientCredentials(r.Context(), auth, r.PostForm.Get("scope"), proof)
	case "":
		err = badRequest("grant_type is required")
	default:
		err = &Error{Status: http.StatusBadRequest, Code: "unsupported_grant_type",
			Description: fmt.Sprintf("grant_type %q is not supported (refresh_token, client_credentials)", gt)}
	}
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, resp)
}

// revokeToken is the RFC 7009 revocation endpoint. A refresh token ends
// its session; an access token is revoked by jti. Tokens of a registered
// client need that client's credentials (or the admin token); a public
// client's token can be revoked by whoever holds it. Unknown or invalid
// tokens get 200 too (RFC 7009 section 2.2).
func (h *handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	tok := r.PostForm.Get("token")
	if tok == "" {
		h.writeError(w, badRequest("token is required"))
		return
	}
	p := h.s.creds.authenticate(r)
	isAdmin := p != nil && p.has(ScopeRevoke)
	var auth clientAuth
	if !isAdmin {
		var err error
		if auth, err = parseClientAuth(r); err != nil {
			h.writeError(w, err)
			return
		}
	}
	mayRevoke := func(clientID string) error {
		if isAdmin {
			return nil
		}
		if _, registered, err := h.s.client(clientID); err != nil {
			return err
		} else if registered {
			if auth.ID != clientID {
				return invalidClient("this token belongs to another client")
			}
			_, err := h.s.authenticate(auth)
			return err
		}
		return nil
	}
	if strings.HasPrefix(tok, "hrt_") {
		sess, ok, err := h.s.sessionOfRefresh(r.Context(), tok)
		if err == nil && !ok {
			h.s.log.Info("token revocation: nothing revoked", "reason", "unknown or used refresh token",
				"source", ratelimit.Source(r.RemoteAddr))
		}
		if err == nil && ok {
			if err = mayRevoke(sess.ClientID); err == nil && !sess.Ended {
				_, err = h.s.EndSession(r.Context(), sess.ID, "refresh token revoked (RFC 7009)", "client:"+sess.ClientID, r.RemoteAddr)
			}
		}
		if err != nil {
			h.writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	c, err := h.s.verifyAnyAudience(r.Context(), tok)
	switch {
	case errors.Is(err, verifier.ErrNotReady):
		h.writeError(w, errUnavailable)
		return
	case err != nil:
		// Not a live token this issuer signed (invalid, expired, already
		// revoked, or another issuer's): 200 and nothing to do (RFC 7009
		// section 2.2), logged, never the token itself.
		h.s.log.Info("token revocation: nothing revoked", "reason", verifier.Reason(err),
			"source", ratelimit.Source(r.RemoteAddr))
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := mayRevoke(c.ClientID); err != nil {
		h.writeError(w, err)
		return
	}
	_, err = h.s.Revoke(r.Context(), RevocationRequest{Kind: "token", Value: c.ID, Reason: "revoked by its holder (RFC 7009)"},
		"client:"+c.ClientID, r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// introspect is the RFC 7662 endpoint. Callers authenticate with the admin
// token or as a registered client. Access tokens are checked by the same
// verifier library the sidecars run, against the same denylist, so both
// paths agree on every token.
func (h *handler) introspect(w http.ResponseWriter, r *http.Request) {
	if p := h.s.creds.authenticate(r); p == nil || !p.has(ScopeRead) {
		auth, err := parseClientAuth(r)
		if err == nil {
			_, err = h.s.authenticate(auth)
		}
		if err != nil {
			h.writeError(w, err)
			return
		}
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		h.writeError(w, badRequest("token is required"))
		return
	}
	res, err := h.s.Introspect(r, tok)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, res)
}

// metadata is the RFC 8414 authorization server metadata.
func (h *handler) metadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpserve.WriteJSON(w, http.StatusOK, h.metadataDoc())
}

// openIDConfiguration is the OpenID Connect Discovery 1.0 document, for
// tooling that validates Herald's access tokens as OIDC bearer tokens
// (oauth2-proxy, Istio, Envoy, Kong, Traefik). It is the RFC 8414
// document plus the fields OIDC requires that Herald can honour:
//
//   - id_token_signing_alg_values_supported names the algorithms of the
//     keys in the JWKS. Herald mints no ID tokens, but OIDC libraries
//     check bearer access tokens against this list (go-oidc falls back
//     to RS256 alone when it is missing, and so refuses EdDSA and ES256).
//   - subject_types_supported is "public": a token's sub is the session's
//     subject, the same for every client.
//
// authorization_endpoint, which the specification requires, is left out:
// Herald has no authorization endpoint, and advertising one would send
// browsers to a 404. go-oidc and oauth2-proxy need only issuer and
// jwks_uri to verify bearer tokens; response_types_supported stays the
// empty list of the RFC 8414 document for the same reason.
func (h *handler) openIDConfiguration(w http.ResponseWriter, _ *http.Request) {
	doc := h.metadataDoc()
	doc["id_token_signing_alg_values_supported"] = h.signingAlgorithms()
	doc["subject_types_supported"] = []string{"public"}
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpserve.WriteJSON(w, http.StatusOK, doc)
}

// metadataDoc builds the fields shared by the RFC 8414 and OpenID Connect
// discovery documents.
func (h *handler) metadataDoc() map[string]any {
	iss := h.s.cfg.IssuerURL
	return map[string]any{
		"issuer":                                        iss,
		"jwks_uri":                                      iss + "/.well-known/jwks.json",
		"token_endpoint":                                iss + "/oauth2/token",
		"revocation_endpoint":                           iss + "/oauth2/revoke",
		"introspection_endpoint":                        iss + "/oauth2/introspect",
		"grant_types_supported":                         []string{"refresh_token", "client_credentials"},
		"response_types_supported":                      []string{},
		"token_endpoint_auth_methods_supported":         []string{"client_secret_basic", "client_secret_post", "none"},
		"revocation_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"scopes_supported":                              []string{},
	}
}

// retryAfter sets the Retry-After header of a 429 or 503 to wait, in whole
// seconds, at least one.
func retryAfter(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
}

// Bounds of the parameters of the OAuth endpoints, in bytes. A request
// with a longer one is refused (400 invalid_request) before anything of
// it is kept.
var maxParamLen = map[string]int{
	"grant_type":      64,
	"client_id":       maxClientIDLen,
	"client_secret":   maxClientSecretLen,
	"refresh_token":   512,
	"scope":           1024,
	"token":           16 << 10,
	"token_type_hint": 64,
	"logout_token":    bus.MaxSignalToken,
}

// Bounds of client credentials: client ids are at most what a session may
// name (bus.MaxValueLen), secrets those this issuer makes with room to
// spare.
const (
	maxClientIDLen     = 256
	maxClientSecretLen = 256
	// maxOtherParamLen bounds parameters the endpoints do not read.
	maxOtherParamLen = 1024
)

// checkParams refuses a form with an over-long parameter, and client
// credentials (from the form or Basic) over their bounds.
func checkParams(r *http.Request) error {
	for k, v := range r.PostForm {
		n, ok := maxParamLen[k]
		if !ok {
			n = maxOtherParamLen
		}
		for _, s := range v {
			if len(s) > n {
				return badRequest(fmt.Sprintf("parameter %.64s is longer than %d bytes", k, n))
			}
		}
	}
	if a, err := parseClientAuth(r); err == nil {
		if len(a.ID) > maxClientIDLen {
			return badRequest(fmt.Sprintf("client_id is longer than %d bytes", maxClientIDLen))
		}
		if len(a.Secret) > maxClientSecretLen {
			return badRequest(fmt.Sprintf("client_secret is longer than %d bytes", maxClientSecretLen))
		}
	}
	return nil
}
