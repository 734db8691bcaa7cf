package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/ssf"
	"github.com/heraldsec/herald/verifier"
)

// ssfKeyFileName is the transmitter key's file in the data directory when
// Config.SSFKeyFile names none.
const ssfKeyFileName = "ssf-key.pem"

// ssfEnabled reports whether the issuer runs the SSF transmitter: unless
// turned off, when its URL is https (or http on a loopback host), which
// SSF requires of a transmitter's endpoints.
func (c *Config) ssfEnabled() bool {
	return !c.DisableSSF && federation.CheckURL(c.IssuerURL) == nil
}

// validateSSF reports the problems of the transmitter's settings.
func (c *Config) validateSSF() []error {
	var errs []error
	switch c.SSFDefaultSubjects {
	case "", ssf.SubjectsAll, ssf.SubjectsNone:
	default:
		errs = append(errs, fmt.Errorf("SSF default subjects %.32q is not ALL or NONE", c.SSFDefaultSubjects))
	}
	if c.SSFRetention < 0 {
		errs = append(errs, errors.New("SSF retention must not be negative"))
	}
	return errs
}

// openSSF loads or creates the transmitter key and builds the SSF
// transmitter, when it is enabled. Run runs it.
func (s *Service) openSSF() error {
	switch {
	case s.cfg.DisableSSF:
		s.log.Info("SSF transmitter off")
		return nil
	case !s.cfg.ssfEnabled():
		s.log.Info("SSF transmitter off: the issuer URL is not https (or http on a loopback host)", "issuer", s.cfg.IssuerURL)
		return nil
	}
	path := s.cfg.SSFKeyFile
	if path == "" {
		path = filepath.Join(s.cfg.DataDir, ssfKeyFileName)
	}
	key, created, err := ssf.LoadOrCreateKey(path)
	if err != nil {
		return fmt.Errorf("SSF transmitter key: %w", err)
	}
	signer, err := ssf.NewSigner(key)
	if err != nil {
		return fmt.Errorf("SSF transmitter key %s: %w", path, err)
	}
	if created {
		s.log.Info("SSF transmitter key created; share it with every replica (--ssf-key-file)", "file", path, "ssf_kid", signer.KeyID())
	}
	t, err := ssf.New(ssf.Config{
		Conn:            s.conn,
		Issuer:          s.cfg.IssuerURL,
		Signer:          signer,
		Open:            s.openRevocation,
		DefaultSubjects: s.cfg.SSFDefaultSubjects,
		Retention:       s.cfg.SSFRetention,
		LoopbackPush:    s.cfg.SSFLoopbackPush,
		Replicas:        s.cfg.Replicas,
		Log:             s.log.With("component", "ssf"),
		MeterProvider:   s.cfg.MeterProvider,
		Now:             s.cfg.Now,
	})
	if err != nil {
		return fmt.Errorf("SSF transmitter: %w", err)
	}
	s.transmitter = t
	return nil
}

// runTransmitter runs the SSF transmitter until ctx ends. Its failure to
// set up the bus stops the issuer, unless the issuer is stopping or its
// bus connection was closed: then it stops with the rest.
func (s *Service) runTransmitter(ctx context.Context) error {
	err := s.transmitter.Run(ctx)
	switch {
	case err == nil, ctx.Err() != nil:
		return nil
	case s.conn.NATS().IsClosed():
		s.log.Error("SSF transmitter stopped: the bus connection is closed", "err", err)
		return nil
	}
	return err
}

// openRevocation checks the event signature of a message of HERALD that
// HERALD_SSF sourced, as verifiers and this issuer's follower do, and
// decodes its event.
func (s *Service) openRevocation(d bus.Delivery) (*bus.Event, error) {
	return bus.OpenEvent(d, bus.StreamRevocations, s.trusted.EventKey)
}

// ssfReceiver authenticates a receiver calling the SSF management API or
// the poll endpoint: an access token this issuer signed (with its DPoP
// proof when bound), for this issuer's audience, by the client
// credentials grant (sub is the client id, no session), of a client not
// revoked. The receiver is the client id; the scopes those of the token.
func (s *Service) ssfReceiver(r *http.Request) (string, []string, error) {
	c, _, err := s.intro.VerifyRequest(r, false)
	switch {
	case errors.Is(err, verifier.ErrNotReady):
		return "", nil, &ssf.Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
			Description: "this issuer is catching up with the revocation stream; retry shortly"}
	case errors.Is(err, verifier.ErrMissing):
		return "", nil, &ssf.Error{Status: http.StatusUnauthorized, Code: "unauthorized",
			Description: "a bearer access token of this issuer is required"}
	case err != nil:
		return "", nil, invalidSSFToken("the access token is not valid: " + verifier.Reason(err))
	case c.Issuer != s.cfg.IssuerURL:
		return "", nil, invalidSSFToken("the access token is not one of this issuer")
	case c.SessionID != "" || c.ClientID == "" || c.Subject != c.ClientID:
		return "", nil, invalidSSFToken("a client credentials access token is required")
	}
	// Clients are registered per replica: one registered on another
	// replica is known here only by its token. Revoking a client is a
	// client revocation, which every replica's denylist (checked above)
	// applies to the tokens it holds.
	rec, ok, err := s.client(c.ClientID)
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("read client: %w", err)
	case ok && rec.Revoked:
		return "", nil, invalidSSFToken("the client is revoked")
	}
	// Each call reads, and most write, the receiver's stream records on
	// the bus, which every replica then reads: a receiver's calls are
	// limited like its token requests (Config.ClientRateLimit), in a
	// bucket of their own.
	if l := s.limits.perClient; l != nil {
		if ok, wait := l.Allow(ssfLimitKey + c.ClientID); !ok {
			return "", nil, &ssf.Error{Status: http.StatusTooManyRequests, Code: "slow_down",
				Description: "too many requests from this receiver; retry later", RetryAfter: wait}
		}
	}
	return c.ClientID, strings.Fields(c.Scope), nil
}

// ssfLimitKey prefixes a receiver's client id in the per-client rate
// limiter, apart from its token requests.
const ssfLimitKey = "ssf\x00"

func invalidSSFToken(desc string) *ssf.Error {
	return &ssf.Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: desc}
}

// ssfConfiguration serves the transmitter configuration metadata (GET
// /.well-known/ssf-configuration).
func (h *handler) ssfConfiguration(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpserve.WriteJSON(w, http.StatusOK, ssf.Metadata(h.s.cfg.IssuerURL, h.s.transmitter.DefaultSubjects()))
}

// ssfJWKS serves the transmitter keys that sign SETs (GET
// /ssf/jwks.json): the replicas' transmitter keys, never the token keys.
func (h *handler) ssfJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(h.s.transmitter.JWKS()) // the client went away; nothing to do
}

// errNoTransmitter answers the operator's SSF API when the transmitter is
// off.
var errNoTransmitter = &Error{Status: http.StatusNotFound, Code: "not_found",
	Description: "the SSF transmitter is off (--ssf=false, or the issuer URL is not https)"}

// ssfAPIError is the issuer's answer for an error of the transmitter.
func ssfAPIError(err error) error {
	var e *ssf.Error
	if errors.As(err, &e) {
		return &Error{Status: e.Status, Code: e.Code, Description: e.Description}
	}
	return err
}

// SSFStreams returns the operator's view of every SSF stream.
func (s *Service) SSFStreams(ctx context.Context) ([]ssf.Info, error) {
	if s.transmitter == nil {
		return nil, errNoTransmitter
	}
	list, err := s.transmitter.Streams(ctx)
	if err != nil {
		return nil, ssfAPIError(err)
	}
	if list == nil {
		list = []ssf.Info{}
	}
	return list, nil
}

// ssfStreams serves GET /v1/ssf/streams.
func (h *handler) ssfStreams(w http.ResponseWriter, r *http.Request) {
	list, err := h.s.SSFStreams(r.Context())
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, list)
}

// SSFStatusRequest is the body of POST /v1/ssf/streams/{id}/status.
type SSFStatusRequest struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// ssfSetStatus serves POST /v1/ssf/streams/{id}/status: the operator
// enables, pauses or disables a stream; its receiver is sent a
// stream-updated SET.
func (h *handler) ssfSetStatus(w http.ResponseWriter, r *http.Request) {
	if h.s.transmitter == nil {
		h.writeError(w, errNoTransmitter)
		return
	}
	var req SSFStatusRequest
	if err := decodeBody(w, r, &req); err != nil {
		h.writeError(w, err)
		return
	}
	if err := ssf.CheckStatus(req.Status, req.Reason); err != nil {
		h.writeError(w, ssfAPIError(err))
		return
	}
	id := r.PathValue("id")
	st, err := h.s.transmitter.SetStatus(r.Context(), "", ssf.StreamStatus{ID: id, Status: req.Status, Reason: req.Reason})
	if err != nil {
		h.writeError(w, ssfAPIError(err))
		return
	}
	h.s.auditSSF(r.Context(), "ssf."+st.Status, id, req.Reason, actor(r), r.RemoteAddr)
	httpserve.WriteJSON(w, http.StatusOK, st)
}

// ssfDelete serves DELETE /v1/ssf/streams/{id}.
func (h *handler) ssfDelete(w http.ResponseWriter, r *http.Request) {
	if h.s.transmitter == nil {
		h.writeError(w, errNoTransmitter)
		return
	}
	id := r.PathValue("id")
	if err := h.s.transmitter.DeleteAny(r.Context(), id); err != nil {
		h.writeError(w, ssfAPIError(err))
		return
	}
	h.s.auditSSF(r.Context(), "ssf.delete", id, "", actor(r), r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

// auditSSF records an operator's change to SSF stream id, made already,
// in HERALD_AUDIT (action ssf.enabled, ssf.paused, ssf.disabled or
// ssf.delete). A record the bus does not take is logged: the change
// stands.
func (s *Service) auditSSF(ctx context.Context, action, id, reason, actor, source string) {
	s.log.Info("SSF stream changed by the operator", "action", action, "stream", id, "actor", actor)
	_, err := s.outbox.commit(ctx, func(c *change) error {
		c.emit(s.adminEvent(s.now(), bus.TypeAdminSSF, actor, source, action, id, reason))
		return nil
	})
	if err != nil && !errors.Is(err, errNotPublished) {
		s.log.Error("SSF operator action not audited", "action", action, "stream", id, "actor", actor, "err", err)
	}
}

// mountSSF adds the transmitter's endpoints to h when it is on: the
// management API and poll endpoint, its configuration metadata and key
// set. The operator's API answers 404 when it is off.
func (h *handler) mountSSF() {
	h.mux.HandleFunc("GET /v1/ssf/streams", h.require(ScopeRead, h.ssfStreams))
	h.mux.HandleFunc("POST /v1/ssf/streams/{id}/status", h.require(ScopeAdmin, h.ssfSetStatus))
	h.mux.HandleFunc("DELETE /v1/ssf/streams/{id}", h.require(ScopeAdmin, h.ssfDelete))
	if h.s.transmitter == nil {
		return
	}
	api := ssf.NewHandler(h.s.transmitter, h.s.ssfReceiver, "")
	h.mux.Handle(ssf.StreamPath, api)
	h.mux.Handle(ssf.StatusPath, api)
	h.mux.Handle(ssf.AddSubjectPath, api)
	h.mux.Handle(ssf.RemoveSubjectPath, api)
	h.mux.Handle(ssf.VerifyPath, api)
	h.mux.Handle(ssf.PollPath, api)
	h.mux.HandleFunc("GET "+ssf.ConfigurationPath, h.ssfConfiguration)
	h.mux.HandleFunc("GET "+ssf.JWKSPath, h.ssfJWKS)
}
