package issuer

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/heraldsec/herald/verifier"
)

// Introspection is an RFC 7662 answer.
type Introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Jti       string   `json:"jti,omitempty"`
	SessionID string   `json:"sid,omitempty"`
	Tenant    string   `json:"tenant,omitempty"`
	// Confirmation is the DPoP key a token is bound to (RFC 9449 section 6.2).
	Confirmation *verifier.Confirmation `json:"cnf,omitempty"`
	// Reason says why a token is not active; an extension to RFC 7662,
	// the same codes as the verifier's WWW-Authenticate.
	Reason string `json:"herald_reason,omitempty"`
}

// Introspect reports whether tok is active: an access token that the
// verifiers accept, or a refresh token that would be accepted now.
func (s *Service) Introspect(r *http.Request, tok string) (*Introspection, error) {
	if strings.HasPrefix(tok, "hrt_") {
		sess, ok, err := s.sessionOfRefresh(r.Context(), tok)
		if err != nil {
			return nil, err
		}
		if !ok || sess.Ended || !sess.live(s.now(), s.cfg.SessionIdle) {
			return &Introspection{Active: false, Reason: "inactive"}, nil
		}
		// Another replica may have answered the revocation of this session
		// and not yet marked it ended: its revocation is in the denylist
		// once this replica has caught up with HERALD.
		if err := s.barrier(r.Context()); err != nil {
			return nil, err
		}
		if cut, err := s.cutoffFor(r.Context(), sess); err != nil {
			return nil, err
		} else if !cut.IsZero() {
			return &Introspection{Active: false, Reason: "inactive"}, nil
		}
		return &Introspection{Active: true, TokenType: "refresh_token", ClientID: sess.ClientID, Sub: sess.Subject,
			Scope: sess.Scope, SessionID: sess.ID, Tenant: sess.Tenant, Exp: sess.Expires.Unix(), Iss: s.cfg.IssuerURL}, nil
	}
	c, err := s.verifyAnyAudience(r.Context(), tok)
	if errors.Is(err, verifier.ErrNotReady) {
		return nil, errUnavailable
	}
	if err != nil {
		return &Introspection{Active: false, Reason: verifier.Reason(err)}, nil
	}
	return &Introspection{Active: true, TokenType: "Bearer", Scope: c.Scope, ClientID: c.ClientID,
		Exp: c.ExpiresAt.Unix(), Iat: c.IssuedAt.Unix(), Sub: c.Subject, Aud: c.Audience, Iss: c.Issuer,
		Jti: c.ID, SessionID: c.SessionID, Tenant: c.Tenant, Confirmation: c.Confirmation}, nil
}

// sessionOfRefresh returns the session of an unused refresh token.
func (s *Service) sessionOfRefresh(ctx context.Context, tok string) (*sessionRecord, bool, error) {
	sid, err := s.refreshSessionID(tok)
	if err != nil {
		var e *Error
		if errors.As(err, &e) { // unknown
			return nil, false, nil
		}
		return nil, false, err
	}
	cur, err := s.sessions.get(ctx, sid)
	if err != nil || cur.sess == nil || cur.sess.Refresh != hashToken(tok) {
		return nil, false, err
	}
	return cur.sess, true, nil
}
