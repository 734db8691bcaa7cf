package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
)

// SessionRequest is the body of POST /v1/sessions.
type SessionRequest struct {
	Subject  string   `json:"sub"`
	Tenant   string   `json:"tenant,omitempty"`
	ClientID string   `json:"client_id,omitempty"`
	Scope    string   `json:"scope,omitempty"`
	TTL      Duration `json:"ttl,omitempty"`
	// DPoPJKT binds the session's tokens to the client's DPoP key, by its
	// RFC 7638 thumbprint (RFC 9449 section 10): refreshes then need a
	// proof by that key, and verifiers accept its access tokens only with
	// one.
	DPoPJKT string `json:"dpop_jkt,omitempty"`
	// Audience names the services the tokens are for (aud). A registered
	// client may only ask for its audiences. Default: the issuer's audience.
	Audience []string `json:"aud,omitempty"`
}

// SessionResponse is the answer to POST /v1/sessions.
type SessionResponse struct {
	SessionID    string `json:"session_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

// validJKT matches an RFC 7638 SHA-256 thumbprint, base64url.
var validJKT = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// Session is a live session as GET /v1/sessions lists it.
type Session struct {
	ID       string    `json:"session_id"`
	Subject  string    `json:"sub"`
	Tenant   string    `json:"tenant,omitempty"`
	ClientID string    `json:"client_id"`
	Scope    string    `json:"scope,omitempty"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	LastUsed time.Time `json:"last_used"`
}

func invalidGrant(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc}
}

// CreateSession starts a session for req.Subject and returns its first
// access token and refresh token. The session, the refresh token's hash and
// the session.created and token.issued events are committed together; the
// answer comes once JetStream has acknowledged the events, or the session
// is undone.
func (s *Service) CreateSession(ctx context.Context, req SessionRequest, actor string) (*SessionResponse, error) {
	if err := checkIdent("sub", req.Subject, true); err != nil {
		return nil, err
	}
	if err := checkIdent("tenant", req.Tenant, false); err != nil {
		return nil, err
	}
	if err := checkIdent("client_id", req.ClientID, false); err != nil {
		return nil, err
	}
	if err := checkText("scope", req.Scope, 1024); err != nil {
		return nil, err
	}
	ttl := time.Duration(req.TTL)
	switch {
	case ttl == 0:
		ttl = s.cfg.AccessTTL
	case ttl < time.Second:
		return nil, badRequest("ttl must be at least 1s")
	case ttl > s.cfg.MaxAccessTTL:
		return nil, badRequest(fmt.Sprintf("ttl must not exceed max_access_ttl (%s)", s.cfg.MaxAccessTTL))
	}
	clientID := req.ClientID
	if clientID == "" {
		clientID = s.cfg.ClientID
	}
	if req.DPoPJKT != "" && !validJKT.MatchString(req.DPoPJKT) {
		return nil, badRequest("dpop_jkt must be a base64url SHA-256 JWK thumbprint (RFC 7638)")
	}
	if c, ok, err := s.client(clientID); err != nil {
		return nil, err
	} else if ok && c.Revoked {
		return nil, badRequest(fmt.Sprintf("client %s is revoked", clientID))
	} else if ok && c.RequireDPoP && req.DPoPJKT == "" {
		return nil, badRequest(fmt.Sprintf("client %s requires DPoP: give dpop_jkt", clientID))
	} else if ok {
		if err := s.allowed(c, req.Scope, req.Audience); err != nil {
			return nil, err
		}
	}
	for _, a := range req.Audience {
		if err := checkIdent("aud", a, true); err != nil {
			return nil, err
		}
	}
	now := s.now()
	sess := &sessionRecord{
		ID: randomID(16), Subject: req.Subject, Tenant: req.Tenant, ClientID: clientID, Scope: req.Scope,
		Created: now, Expires: now.Add(s.cfg.SessionTTL), LastUsed: now, JKT: req.DPoPJKT, Audience: req.Audience,
	}
	access, _, issued, err := s.mint(now, grant{subject: sess.Subject, tenant: sess.Tenant, clientID: clientID,
		sessionID: sess.ID, scope: sess.Scope, ttl: ttl, jkt: sess.JKT, audience: sess.Audience}, actor)
	if err != nil {
		return nil, err
	}
	refresh, hash := newRefreshToken()
	sess.Refresh = hash
	_, err = s.outbox.commit(ctx, func(c *change) error {
		if err := c.put(sessionKey(sess.ID), sess); err != nil {
			return err
		}
		if err := c.put(subjectKey(sess.Subject, sess.ID), struct{}{}); err != nil {
			return err
		}
		if err := c.put(refreshKey(hash), &refreshRecord{SessionID: sess.ID, Expires: sess.Expires}); err != nil {
			return err
		}
		c.emit(&bus.Event{
			ID: bus.NewID(), Type: bus.TypeSessionCreated, Time: now, Actor: actor,
			Session: &bus.Session{ID: sess.ID, Subject: sess.Subject, Tenant: sess.Tenant, ClientID: clientID,
				Scope: sess.Scope, Expires: sess.Expires},
		})
		c.emit(issued)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.metrics.issue(ctx, "session")
	return &SessionResponse{SessionID: sess.ID, AccessToken: access, RefreshToken: refresh, TokenType: tokenType(sess.JKT),
		ExpiresIn: int64(ttl / time.Second)}, nil
}

// refresh rotates a refresh token (RFC 6749 section 6, RFC 9700 section
// 4.14.2): the presented token is used up and a new one returned with a new
// access token. Presenting a used token revokes the whole session (reuse
// detection). Two concurrent refreshes with one token: exactly one wins,
// since both run under the session's lock and the first marks it used.
func (s *Service) refresh(ctx context.Context, token string, auth clientAuth, proof string) (*TokenResponse, error) {
	if token == "" {
		return nil, badRequest("refresh_token is required")
	}
	proofJKT, err := s.checkProof(proof)
	if err != nil {
		return nil, err
	}
	hash := hashToken(token)
	var rt refreshRecord
	b, ok, err := s.state.Get(refreshKey(hash))
	if err != nil {
		return nil, err
	}
	if !ok || decodeJSON(b, &rt) != nil {
		return nil, invalidGrant("unknown refresh token")
	}
	unlock := s.sessions.lock(rt.SessionID)
	defer unlock()

	now := s.now()
	var (
		resp   *TokenResponse
		reused bool
		denied *Error
	)
	_, err = s.outbox.commit(ctx, func(c *change) error {
		var sess sessionRecord
		if ok, err := c.get(sessionKey(rt.SessionID), &sess); err != nil {
			return err
		} else if !ok {
			denied = invalidGrant("unknown session")
			return nil
		}
		if err := s.checkClientForSession(c, &sess, auth); err != nil {
			return err
		}
		if sess.JKT != "" && proofJKT != sess.JKT {
			// RFC 9449 section 5: a bound refresh token needs a proof by its key.
			denied = invalidDPoP("this session is bound to a DPoP key: a proof by that key is required")
			return nil
		}
		var cur refreshRecord
		if ok, err := c.get(refreshKey(hash), &cur); err != nil || !ok {
			denied = invalidGrant("unknown refresh token")
			return err
		}
		if sess.Ended {
			denied = invalidGrant("session ended")
			return nil
		}
		if cur.Used {
			reused = true
			c.keep()
			_, err := s.endSession(c, &sess, now, "refresh token reuse", "herald")
			return err
		}
		if cut, err := s.cutoffFor(c, &sess); err != nil {
			return err
		} else if !cut.IsZero() {
			denied = invalidGrant("session revoked")
			c.keep()
			sess.Ended, sess.EndedWhy = true, "revoked"
			return c.put(sessionKey(sess.ID), &sess)
		}
		if !sess.live(now, s.cfg.SessionIdle) {
			denied = invalidGrant("session expired")
			return nil
		}
		ttl := min(s.cfg.AccessTTL, sess.Expires.Sub(now))
		access, _, issued, err := s.mint(now, grant{subject: sess.Subject, tenant: sess.Tenant, clientID: sess.ClientID,
			sessionID: sess.ID, scope: sess.Scope, ttl: ttl, jkt: sess.JKT, audience: sess.Audience}, "client:"+sess.ClientID)
		if err != nil {
			return err
		}
		next, nextHash := newRefreshToken()
		cur.Used = true
		sess.LastUsed, sess.Refresh = now, nextHash
		if err := c.put(refreshKey(hash), &cur); err != nil {
			return err
		}
		if err := c.put(refreshKey(nextHash), &refreshRecord{SessionID: sess.ID, Expires: sess.Expires}); err != nil {
			return err
		}
		if err := c.put(sessionKey(sess.ID), &sess); err != nil {
			return err
		}
		c.emit(issued)
		resp = &TokenResponse{AccessToken: access, TokenType: tokenType(sess.JKT), ExpiresIn: int64(ttl / time.Second),
			RefreshToken: next, Scope: sess.Scope, SessionID: sess.ID}
		return nil
	})
	switch {
	case reused:
		if err != nil && !errors.Is(err, errNotPublished) {
			return nil, err
		}
		s.log.Warn("refresh token reuse: session revoked", "sid", rt.SessionID)
		return nil, invalidGrant("refresh token already used; the session is revoked")
	case err != nil:
		return nil, err
	case denied != nil:
		return nil, denied
	}
	s.metrics.issue(ctx, "refresh_token")
	return resp, nil
}

// endSession marks a session ended and emits the session revocation that
// enforces it on every verifier, with a session.ended audit event. It
// returns the revocation event.
func (s *Service) endSession(c *change, sess *sessionRecord, now time.Time, why, actor string) (*bus.Event, error) {
	sess.Ended, sess.EndedWhy = true, why
	if err := c.put(sessionKey(sess.ID), sess); err != nil {
		return nil, err
	}
	rev := s.revocationEvent(now, actor, bus.KindSession, sess.ID, why)
	c.emit(rev)
	c.emit(&bus.Event{
		ID: bus.NewID(), Type: bus.TypeSessionEnded, Time: now, Actor: actor,
		Session: &bus.Session{ID: sess.ID, Subject: sess.Subject, Tenant: sess.Tenant, ClientID: sess.ClientID,
			Scope: sess.Scope, Expires: sess.Expires, Reason: why},
	})
	return rev, nil
}

// cutoffFor returns the latest subject, client, tenant or all revocation
// that covers a session created before it, or the zero time.
func (s *Service) cutoffFor(c *change, sess *sessionRecord) (time.Time, error) {
	for _, kv := range []struct {
		k bus.Kind
		v string
	}{{bus.KindSubject, sess.Subject}, {bus.KindClient, sess.ClientID}, {bus.KindTenant, sess.Tenant}, {bus.KindAll, ""}} {
		if kv.k == bus.KindTenant && kv.v == "" {
			continue
		}
		var cut cutoff
		ok, err := c.get(cutoffKey(kv.k, kv.v), &cut)
		if err != nil {
			return time.Time{}, err
		}
		if ok && !sess.Created.After(cut.At) {
			return cut.At, nil
		}
		// Revocations made through another issuer replica reach this one
		// through the stream, into the denylist it follows.
		if e, ok := s.deny.Lookup(verifier.DenyKey(kv.k, kv.v)); ok && !sess.Created.After(e.At) {
			return e.At, nil
		}
	}
	if e, ok := s.deny.Lookup(verifier.DenyKey(bus.KindSession, sess.ID)); ok {
		return e.At, nil
	}
	return time.Time{}, nil
}

// ListSessions returns the live sessions of a subject.
func (s *Service) ListSessions(sub string) ([]Session, error) {
	if err := checkIdent("sub", sub, true); err != nil {
		return nil, err
	}
	now := s.now()
	out := []Session{}
	prefix := subjectKey(sub, "")
	err := s.state.Scan(prefix, func(key string, _ []byte) error {
		sid := strings.TrimPrefix(key, prefix)
		var sess sessionRecord
		b, ok, err := s.state.Get(sessionKey(sid))
		if err != nil || !ok {
			return err
		}
		if err := decodeJSON(b, &sess); err != nil {
			return err
		}
		if !sess.live(now, s.cfg.SessionIdle) {
			return nil
		}
		out = append(out, Session{ID: sess.ID, Subject: sess.Subject, Tenant: sess.Tenant, ClientID: sess.ClientID,
			Scope: sess.Scope, Created: sess.Created, Expires: sess.Expires, LastUsed: sess.LastUsed})
		return nil
	})
	return out, err
}

// errNoSession is returned for an unknown session id.
var errNoSession = &Error{Status: http.StatusNotFound, Code: "not_found", Description: "no such session"}

// EndSession ends a session: its refresh token stops working and a session
// revocation makes every verifier refuse its access tokens.
func (s *Service) EndSession(ctx context.Context, sid, reason, actor, source string) (*RevocationResult, error) {
	if err := checkIdent("session id", sid, true); err != nil {
		return nil, err
	}
	if err := checkText("reason", reason, 1024); err != nil {
		return nil, err
	}
	unlock := s.sessions.lock(sid)
	defer unlock()
	now := s.now()
	var res *RevocationResult
	seqs, err := s.outbox.commit(ctx, func(c *change) error {
		c.keep()
		var sess sessionRecord
		if ok, err := c.get(sessionKey(sid), &sess); err != nil {
			return err
		} else if !ok {
			return errNoSession
		}
		if reason == "" {
			reason = "ended by admin"
		}
		rev, err := s.endSession(c, &sess, now, reason, actor)
		if err != nil {
			return err
		}
		c.emit(s.adminEvent(now, bus.TypeAdminSession, actor, source, "session.end", sid, reason))
		res = &RevocationResult{ID: rev.ID, At: now}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Seq = seqs[0]
	s.waitMillisecond(now)
	return res, nil
}
