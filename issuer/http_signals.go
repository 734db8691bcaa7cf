package issuer

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/internal/ratelimit"
	"github.com/heraldsec/herald/signals"
)

// Paths where signals from outside arrive.
const (
	// BackChannelLogoutPath receives OpenID Connect back-channel logout
	// tokens: the backchannel_logout_uri to register at an identity
	// provider is the issuer URL plus this path.
	BackChannelLogoutPath = "/oidc/backchannel-logout"
	// SSFPushPath receives SETs pushed by a Shared Signals transmitter
	// (RFC 8935), with a credential of scope signals.
	SSFPushPath = "/ssf/push"
)

// backChannelLogout serves POST /oidc/backchannel-logout (OpenID Connect
// Back-Channel Logout 1.0, section 2.8): 200 once the revocation the
// logout token asks for is acknowledged by JetStream, 400 with a JSON
// error otherwise. The identity provider does not retry, so nothing is
// answered 200 before it is durable.
func (h *handler) backChannelLogout(w http.ResponseWriter, r *http.Request) {
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		h.writeError(w, badRequest("logout_token is required"))
		return
	}
	pre := h.s.prefetchSignal(r.Context(), raw)
	lt, err := signals.ParseLogoutToken(raw, h.s.signalConfig(r.Context(), bus.SignalLogout))
	if err != nil {
		h.s.metrics.signal(r.Context(), bus.SignalLogout, signals.Code(err))
		h.writeError(w, badRequest(signalDescription(err)))
		return
	}
	o := lt.Revocation()
	work := &signalWork{format: bus.SignalLogout, sender: ratelimit.Source(r.RemoteAddr), raw: raw,
		iss: lt.Issuer, jti: lt.JTI, events: []string{signals.EventBackchannelLogout}, note: o.Note, lookup: pre}
	work.revoke = h.s.revocationFor(&RevocationRequest{Kind: o.Kind.String(), Value: o.Value, Issuer: o.Issuer,
		Reason: "back-channel logout"}, &work.note)
	out, err := h.s.receiveSignal(r.Context(), work)
	switch {
	case err == nil && out.Duplicate:
		err = errSignalReplayed
	case err == nil:
		h.s.metrics.signal(r.Context(), bus.SignalLogout, "")
		w.WriteHeader(http.StatusOK)
		return
	}
	h.s.metrics.signal(r.Context(), bus.SignalLogout, signals.Code(err))
	var se *signals.Error
	if errors.As(err, &se) {
		h.writeError(w, badRequest(se.Description))
		return
	}
	h.s.log.Error("back-channel logout not recorded", "iss", lt.Issuer, "err", err)
	h.writeError(w, &Error{Status: http.StatusBadRequest, Code: "temporarily_unavailable",
		Description: "the logout could not be recorded durably; nothing was revoked"})
}

// ssfPush serves POST /ssf/push (RFC 8935): 202 once what the SET asks
// for is acknowledged by JetStream, or once the same SET was received
// before; otherwise the RFC 8935 error response. The sender authenticates
// with an admin credential of scope signals.
func (h *handler) ssfPush(w http.ResponseWriter, r *http.Request) {
	p, wait := h.s.creds.check(r)
	switch {
	case wait > 0:
		retryAfter(w, wait)
		writeSETError(w, http.StatusTooManyRequests, &signals.Error{Code: signals.CodeAuthenticationFailed,
			Description: "too many failed authentication attempts from this address; retry later"})
		return
	case p == nil:
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald-signals"`)
		writeSETError(w, 0, &signals.Error{Code: signals.CodeAuthenticationFailed, Description: "a bearer credential of scope signals is required"})
		return
	case !p.has(ScopeSignals):
		writeSETError(w, 0, &signals.Error{Code: signals.CodeAccessDenied, Description: fmt.Sprintf("credential %s lacks the signals scope", p.name)})
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/secevent+jwt" {
		writeSETError(w, 0, &signals.Error{Code: signals.CodeInvalidRequest, Description: "content type must be application/secevent+jwt"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bus.MaxSignalToken))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeSETError(w, http.StatusRequestEntityTooLarge, &signals.Error{Code: signals.CodeInvalidRequest,
				Description: fmt.Sprintf("SET larger than %d bytes", bus.MaxSignalToken)})
			return
		}
		writeSETError(w, 0, &signals.Error{Code: signals.CodeInvalidRequest, Description: "body could not be read"})
		return
	}
	out, err := h.s.receiveSET(r.Context(), string(body), bus.SignalPush, p.name)
	if err != nil {
		var se *signals.Error
		if errors.As(err, &se) {
			writeSETError(w, 0, se)
			return
		}
		h.s.log.Error("pushed SET not recorded", "sender", p.name, "err", err)
		w.Header().Set("Retry-After", "5")
		writeSETError(w, http.StatusServiceUnavailable, &signals.Error{Code: "temporarily_unavailable",
			Description: "the SET could not be recorded durably; retry"})
		return
	}
	_ = out
	w.WriteHeader(http.StatusAccepted)
}

// writeSETError writes the RFC 8935 error response for e, with status, or
// e's own status when status is 0.
func writeSETError(w http.ResponseWriter, status int, e *signals.Error) {
	if status == 0 {
		status = e.HTTPStatus()
	}
	httpserve.WriteJSON(w, status, e)
}

// signalDescription returns the description of a signals error, or its
// text.
func signalDescription(err error) string {
	var se *signals.Error
	if errors.As(err, &se) {
		return se.Code + ": " + se.Description
	}
	return err.Error()
}
