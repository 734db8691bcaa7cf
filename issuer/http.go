package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/internal/jsonstrict"
)

// maxBodyBytes bounds request bodies of the API, maxBulkBytes those of
// revocations, which may carry up to MaxBulkRequest values.
const (
	maxBodyBytes = 64 << 10
	maxBulkBytes = 32 << 20
)

// handler serves the issuer's HTTP API.
type handler struct {
	s   *Service
	mux *http.ServeMux
}

var _ http.Handler = (*handler)(nil)

func newHandler(s *Service) *handler {
	h := &handler{s: s, mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /v1/sessions", h.require(ScopeSessions, h.createSession))
	h.mux.HandleFunc("GET /v1/sessions", h.require(ScopeRead, h.listSessions))
	h.mux.HandleFunc("DELETE /v1/sessions/{sid}", h.require(ScopeRevoke, h.endSession))
	h.mux.HandleFunc("POST /v1/revocations", h.require(ScopeRevoke, h.revoke))
	h.mux.HandleFunc("GET /v1/revocations", h.require(ScopeRead, h.listRevocations))
	h.mux.HandleFunc("GET /v1/audit", h.require(ScopeRead, h.listAudit))
	h.mux.HandleFunc("GET /v1/events", h.require(ScopeRead, h.events))
	h.mux.HandleFunc("POST /v1/keys/rotate", h.require(ScopeAdmin, h.rotateKey))
	h.mux.HandleFunc("GET /v1/verifiers", h.require(ScopeRead, h.verifiers))
	h.mux.HandleFunc("POST /v1/clients", h.require(ScopeAdmin, h.createClient))
	h.mux.HandleFunc("GET /v1/clients", h.require(ScopeRead, h.listClients))
	h.mux.HandleFunc("POST /v1/clients/{id}/secret", h.require(ScopeAdmin, h.rotateClientSecret))
	h.mux.HandleFunc("DELETE /v1/clients/{id}", h.require(ScopeAdmin, h.deleteClient))
	h.mux.HandleFunc("POST /v1/credentials", h.require(ScopeAdmin, h.createCredential))
	h.mux.HandleFunc("GET /v1/credentials", h.require(ScopeAdmin, h.listCredentials))
	h.mux.HandleFunc("POST /v1/credentials/{name}/rotate", h.require(ScopeAdmin, h.rotateCredential))
	h.mux.HandleFunc("DELETE /v1/credentials/{name}", h.require(ScopeAdmin, h.deleteCredential))
	h.mux.HandleFunc("POST /oauth2/token", h.limited(h.token))
	h.mux.HandleFunc("POST /oauth2/revoke", h.limited(h.revokeToken))
	h.mux.HandleFunc("POST "+SessionEndPath, h.limited(h.endSessionByToken))
	h.mux.HandleFunc("POST /oauth2/introspect", h.limited(h.introspect))
	h.mux.HandleFunc("POST "+BackChannelLogoutPath, h.limited(h.backChannelLogout))
	h.mux.HandleFunc("POST "+SSFPushPath, h.ssfPush)
	h.mux.HandleFunc("GET /.well-known/oauth-authorization-server", h.metadata)
	h.mux.HandleFunc("GET /.well-known/openid-configuration", h.openIDConfiguration)
	h.mux.HandleFunc("GET /.well-known/jwks.json", h.jwks)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpserve.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Metrics == nil {
			http.Error(w, "metrics are not configured", http.StatusNotFound)
			return
		}
		s.cfg.Metrics.ServeHTTP(w, r)
	})
	h.mountSSF()
	h.mux.HandleFunc("GET /{$}", serveDashboardIndex)
	h.mux.HandleFunc("GET /dashboard/{file}", serveDashboardAsset)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// require wraps next so that it runs only for a credential with scope:
// 401 without a valid admin credential, 403 with one that lacks the scope,
// and 429 with Retry-After, without looking at the credential, while the
// request's source is over the limit of failed attempts (see
// authFailureBurst).
func (h *handler) require(scope string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, wait := h.s.creds.check(r)
		if wait > 0 {
			h.writeError(w, &Error{Status: http.StatusTooManyRequests, Code: "slow_down", RetryAfter: wait,
				Description: "too many failed authentication attempts from this address; retry later"})
			return
		}
		if p == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald-admin"`)
			h.writeError(w, errUnauthorized)
			return
		}
		if !p.has(scope) {
			h.writeError(w, &Error{Status: http.StatusForbidden, Code: "insufficient_scope",
				Description: fmt.Sprintf("credential %s lacks the %s scope", p.name, scope)})
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// readyz is ready once the issuer may mint: connected, and its
// revocation follower caught up with the stream.
func (h *handler) readyz(w http.ResponseWriter, _ *http.Request) {
	connected, caughtUp, revoked := h.s.conn.Connected(), h.s.follow.CaughtUp(), h.s.ownEventKeyRevoked()
	ready := connected && caughtUp && !revoked
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	body := map[string]any{"ready": ready, "connected": connected, "caught_up": caughtUp, "event_key_revoked": revoked}
	// A trusted issuer that cannot be reached does not make this issuer
	// unready (verifiers keep its last good keys); it shows here.
	if st := h.s.TrustStatus(); len(st) > 0 {
		body["trusted_issuers"] = st
	}
	httpserve.WriteJSON(w, code, body)
}

// decodeBody reads a bounded JSON body with no unknown members into v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBodyMax(w, r, v, maxBodyBytes)
}

// decodeBodyMax is decodeBody with a bound of max bytes. Duplicate member
// names and case variants of v's names are refused before decoding:
// encoding/json would keep the last duplicate and match "Kind" to "kind",
// so a proxy or log that reads the first could see another request.
func decodeBodyMax(w http.ResponseWriter, r *http.Request, v any, max int64) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request",
				Description: fmt.Sprintf("body larger than %d bytes", max)}
		}
		return badRequest("body could not be read: " + err.Error())
	}
	if err := jsonstrict.CheckObject(data, v); err != nil {
		return badRequest("body is not valid JSON for this endpoint: " + err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body is not valid JSON for this endpoint: " + err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("body has data after the JSON object")
	}
	return nil
}

func (h *handler) writeError(w http.ResponseWriter, err error) {
	e := apiError(err)
	if e.Code == "invalid_client" {
		w.Header().Set("WWW-Authenticate", `Basic realm="herald"`)
	}
	if e.RetryAfter > 0 {
		retryAfter(w, e.RetryAfter)
	}
	if e.Status >= 500 {
		h.s.log.Error("request failed", "status", e.Status, "err", err)
	}
	httpserve.WriteJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
}

type principalKey struct{}

// actor returns the name of the credential that made r.
func actor(r *http.Request) string {
	if p, ok := r.Context().Value(principalKey{}).(*principal); ok {
		return p.name
	}
	return "anonymous"
}
