package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sync"
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
// access token and refresh token. Its session.created and token.issued
// events are staged in the outbox, then the session is created in
// HERALD_SESSIONS, where every issuer replica finds it; the answer comes
// once JetStream has acknowledged that write, so the session is durable,
// and normally its events too: if they are not, they stay in the outbox
// and Run publishes them. A session that cannot be created changes nothing.
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
	c, registered, err := s.client(clientID)
	switch {
	case err != nil:
		return nil, err
	case registered && c.Revoked:
		return nil, badRequest(fmt.Sprintf("client %s is revoked", clientID))
	case registered && c.RequireDPoP && req.DPoPJKT == "":
		return nil, badRequest(fmt.Sprintf("client %s requires DPoP: give dpop_jkt", clientID))
	case registered:
		if err := s.allowed(c, req.Scope, req.Audience); err != nil {
			return nil, err
		}
	}
	for _, a := range req.Audience {
		if err := checkIdent("aud", a, true); err != nil {
			return nil, err
		}
	}
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, err
	}
	now := s.now()
	sess := &sessionRecord{
		ID: randomID(16), Subject: req.Subject, Tenant: req.Tenant, ClientID: clientID, Scope: req.Scope,
		Created: now, Expires: now.Add(s.cfg.SessionTTL), LastUsed: now, JKT: req.DPoPJKT, Audience: req.Audience,
		Registered: registered,
	}
	access, _, issued, err := s.mint(now, grant{subject: sess.Subject, tenant: sess.Tenant, clientID: clientID,
		sessionID: sess.ID, scope: sess.Scope, ttl: ttl, jkt: sess.JKT, audience: sess.Audience}, actor)
	if err != nil {
		return nil, err
	}
	refresh, hash := newRefreshToken(sess.ID)
	sess.Refresh = hash
	events := []*bus.Event{{
		ID: bus.NewID(), Type: bus.TypeSessionCreated, Time: now, Actor: actor,
		Session: &bus.Session{ID: sess.ID, Subject: sess.Subject, Tenant: sess.Tenant, ClientID: clientID,
			Scope: sess.Scope, Expires: sess.Expires},
	}, issued}
	st, err := s.outbox.stage(events, false)
	if err != nil {
		return nil, err
	}
	if err := s.sessions.create(ctx, sess); err != nil {
		s.outbox.drop(st)
		return nil, fmt.Errorf("%w: %w", errUnavailable, err)
	}
	// Published now, or by Run if the bus fails right after the session
	// was created: the session exists either way.
	_, _ = s.outbox.send(ctx, st)
	s.metrics.issue(ctx, "session")
	return &SessionResponse{SessionID: sess.ID, AccessToken: access, RefreshToken: refresh, TokenType: tokenType(sess.JKT),
		ExpiresIn: int64(ttl / time.Second)}, nil
}

// refresh rotates a refresh token (RFC 6749 section 6, RFC 9700 section
// 4.14.2): the presented token is used up and a new one returned with a new
// access token. Presenting a used token revokes the whole session (reuse
// detection). Any issuer replica serves any session: the rotation is a
// compare-and-set on the session's entry in HERALD_SESSIONS. Of two
// concurrent refreshes with one token, on one replica or two, exactly one
// wins; the other finds the token used when it reads again, which is
// reuse: it gets invalid_grant and the session is revoked, as with one
// replica.
func (s *Service) refresh(ctx context.Context, token string, auth clientAuth, proof string) (*TokenResponse, error) {
	if token == "" {
		return nil, badRequest("refresh_token is required")
	}
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, err // it may not know yet of a revocation that ends this session
	}
	p, err := s.checkProof(proof)
	if err != nil {
		return nil, err
	}
	proofJKT := proofJKT(p)
	sid, err := s.refreshSessionID(token)
	if err != nil {
		return nil, err
	}
	hash := hashToken(token)
	now := s.now()
	var (
		resp   *TokenResponse
		reused bool
		denied *Error
		// recorded: the proof is remembered, by an earlier run of the
		// change that lost a race to another writer.
		recorded bool
	)
	_, err = s.changeSession(ctx, sid, func(sess *sessionRecord) (*sessionWrite, error) {
		resp, reused, denied = nil, false, nil
		current := sess != nil && hash == sess.Refresh
		if sess == nil || !current && !slices.Contains(sess.Used, hash) {
			denied = invalidGrant("unknown refresh token")
			return nil, nil
		}
		if err := s.checkClientForSession(sess, auth); err != nil {
			return nil, err
		}
		if sess.JKT != "" && proofJKT != sess.JKT {
			// RFC 9449 section 5: a bound refresh token needs a proof by its key.
			denied = invalidDPoP("this session is bound to a DPoP key: a proof by that key is required")
			return nil, nil
		}
		if sess.Ended {
			denied = invalidGrant("session ended")
			return nil, nil
		}
		if !current {
			reused = true
			return s.endSession(sess, now, "refresh token reuse", "herald"), nil
		}
		// Nor of one another replica has just answered. Only a caller
		// holding the session's refresh token gets here: no other makes
		// the issuer read HERALD's head.
		if err := s.barrier(ctx); err != nil {
			return nil, err
		}
		if sess.JKT != "" && !recorded {
			// The proof's key is the session's: only now is it remembered.
			if err := s.recordProof(p); err != nil {
				denied = apiError(err)
				return nil, nil
			}
			recorded = true
		}
		if cut, err := s.cutoffFor(ctx, sess); err != nil {
			return nil, err
		} else if !cut.IsZero() {
			denied = invalidGrant("session revoked")
			sess.Ended, sess.EndedWhy = true, "revoked"
			return &sessionWrite{keep: true}, nil
		}
		if !sess.live(now, s.cfg.SessionIdle) {
			denied = invalidGrant("session expired")
			return nil, nil
		}
		ttl := min(s.cfg.AccessTTL, sess.Expires.Sub(now))
		access, _, issued, err := s.mint(now, grant{subject: sess.Subject, tenant: sess.Tenant, clientID: sess.ClientID,
			sessionID: sess.ID, scope: sess.Scope, ttl: ttl, jkt: sess.JKT, audience: sess.Audience}, "client:"+sess.ClientID)
		if err != nil {
			return nil, err
		}
		next, nextHash := newRefreshToken(sess.ID)
		sess.Used = append(sess.Used, hash)
		if n := len(sess.Used) - maxUsedRefresh; n > 0 {
			sess.Used = slices.Delete(sess.Used, 0, n)
		}
		sess.LastUsed, sess.Refresh = now, nextHash
		resp = &TokenResponse{AccessToken: access, TokenType: tokenType(sess.JKT), ExpiresIn: int64(ttl / time.Second),
			RefreshToken: next, Scope: sess.Scope, SessionID: sess.ID}
		return &sessionWrite{events: []*bus.Event{issued}}, nil
	})
	published := err == nil || errors.Is(err, errNotPublished) // or will be, by Run
	switch {
	case denied != nil:
		return nil, denied
	case reused && published:
		s.log.Warn("refresh token reuse: session revoked", "sid", sid)
		return nil, invalidGrant("refresh token already used; the session is revoked")
	case resp != nil && published:
		// The token is rotated: the client must get the new one.
	case err != nil:
		return nil, err
	}
	s.metrics.issue(ctx, "refresh_token")
	return resp, nil
}

// refreshSessionID returns the id of the session a refresh token names. A
// token made before sessions moved to HERALD_SESSIONS does not name it;
// the replica that made it finds it in its own store.
func (s *Service) refreshSessionID(token string) (string, error) {
	if sid := refreshTokenSession(token); sid != "" {
		return sid, nil
	}
	var rt refreshRecord
	b, ok, err := s.state.Get(refreshKey(hashToken(token)))
	if err != nil {
		return "", err
	}
	if !ok || decodeJSON(b, &rt) != nil {
		return "", invalidGrant("unknown refresh token")
	}
	return rt.SessionID, nil
}

// endSession marks a session ended and returns the write that records it:
// the session revocation that enforces it on every verifier, first, and a
// session.ended audit event.
func (s *Service) endSession(sess *sessionRecord, now time.Time, why, actor string) *sessionWrite {
	sess.Ended, sess.EndedWhy = true, why
	return &sessionWrite{keep: true, events: []*bus.Event{
		s.revocationEvent(now, actor, bus.KindSession, sess.ID, why, ""),
		{
			ID: bus.NewID(), Type: bus.TypeSessionEnded, Time: now, Actor: actor,
			Session: &bus.Session{ID: sess.ID, Subject: sess.Subject, Tenant: sess.Tenant, ClientID: sess.ClientID,
				Scope: sess.Scope, Expires: sess.Expires, Reason: why},
		},
	}}
}

// cutoffFor returns the time of the revocation that stops a session from
// being refreshed, or the zero time: a subject, client, tenant or all
// revocation covering the session, or a revocation of the session itself.
// Every replica records the first kinds in HERALD_SESSIONS before its
// revocation answers (shareCutoffs), and they are read from there first;
// those made through this replica are in its state, and those made through
// another reach it through the stream, into the denylist it follows.
func (s *Service) cutoffFor(ctx context.Context, sess *sessionRecord) (time.Time, error) {
	type query struct {
		k bus.Kind
		v string
	}
	queries := []query{{bus.KindSubject, sess.Subject}, {bus.KindClient, sess.ClientID}, {bus.KindAll, ""}}
	if sess.Tenant != "" {
		queries = append(queries, query{bus.KindTenant, sess.Tenant})
	}
	found := make([]sharedCutoff, len(queries))
	ok := make([]bool, len(queries))
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Go(func() { found[i], ok[i], errs[i] = s.sessions.cutoff(ctx, q.k, q.v) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return time.Time{}, err
	}
	for i := range queries {
		if ok[i] && s.covers(found[i], sess) {
			return found[i].at, nil
		}
	}
	for _, kv := range []struct {
		k bus.Kind
		v string
	}{{bus.KindSubject, sess.Subject}, {bus.KindClient, sess.ClientID}, {bus.KindTenant, sess.Tenant}, {bus.KindAll, ""}, {bus.KindSession, sess.ID}} {
		if kv.k == bus.KindTenant && kv.v == "" {
			continue
		}
		created := sess.Created
		if kv.k == bus.KindSession {
			created = time.Time{} // every token of the session, whenever issued
		}
		var cut cutoff
		b, ok, err := s.state.Get(cutoffKey(kv.k, kv.v))
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			if err := decodeJSON(b, &cut); err != nil {
				return time.Time{}, err
			}
			if !created.After(cut.At) {
				return cut.At, nil
			}
		}
		if e, ok := s.deny.Lookup(verifier.DenyKey(kv.k, kv.v)); ok && !created.After(e.At) {
			return e.At, nil
		}
	}
	return time.Time{}, nil
}

// covers reports whether shared cut-off c stops session sess: the session
// began before the cut-off was written, or was created at or before the
// cut-off's time. The first needs no clock; the second catches sessions
// created while the revocation was being made. The first holds only for a
// cut-off written within the leeway of its revocation: one written later
// (the bus was down, or an upgraded issuer shared its older ones) would
// also stop the sessions created after the revocation. Such a cut-off, and
// a session that does not know its place in the bucket, fall back on the
// clocks, allowing for skew between replicas by the leeway: skew then
// revokes more, never less.
func (s *Service) covers(c sharedCutoff, sess *sessionRecord) bool {
	late := c.written.Sub(c.at) > s.cfg.Leeway
	if sess.Seq != 0 && !late {
		return sess.Seq < c.rev || !sess.Created.After(c.at)
	}
	return !sess.Created.After(c.at.Add(s.cfg.Leeway))
}

// ListSessions returns the live sessions of a subject, from whichever
// replica created them.
func (s *Service) ListSessions(ctx context.Context, sub string) ([]Session, error) {
	if err := checkIdent("sub", sub, true); err != nil {
		return nil, err
	}
	if err := s.barrier(ctx); err != nil {
		return nil, err // a session another replica revoked is not listed
	}
	recs, err := s.sessions.ofSubject(ctx, sub)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := []Session{}
	for _, sess := range recs {
		if !sess.live(now, s.cfg.SessionIdle) {
			continue
		}
		if cut, err := s.cutoffFor(ctx, sess); err != nil {
			return nil, err
		} else if !cut.IsZero() {
			continue
		}
		out = append(out, Session{ID: sess.ID, Subject: sess.Subject, Tenant: sess.Tenant, ClientID: sess.ClientID,
			Scope: sess.Scope, Created: sess.Created, Expires: sess.Expires, LastUsed: sess.LastUsed})
	}
	slices.SortFunc(out, func(a, b Session) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// errNoSession is returned for an unknown session id.
var errNoSession = &Error{Status: http.StatusNotFound, Code: "not_found", Description: "no such session"}

// EndSession ends a session, whichever replica created it: its refresh
// token stops working and a session revocation makes every verifier refuse
// its access tokens.
func (s *Service) EndSession(ctx context.Context, sid, reason, actor, source string) (*RevocationResult, error) {
	if err := checkIdent("session id", sid, true); err != nil {
		return nil, err
	}
	if err := checkText("reason", reason, 1024); err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "ended by admin"
	}
	now := s.now()
	var rev *bus.Event
	seqs, err := s.changeSession(ctx, sid, func(sess *sessionRecord) (*sessionWrite, error) {
		if sess == nil {
			return nil, errNoSession
		}
		w := s.endSession(sess, now, reason, actor)
		w.events = append(w.events, s.adminEvent(now, bus.TypeAdminSession, actor, source, "session.end", sid, reason))
		rev = w.events[0]
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	// A session revocation refuses every token of the session, whenever
	// issued: no wait for its millisecond to pass (comparesIssuedAt).
	return &RevocationResult{ID: rev.ID, Seq: seqs[0], At: now}, nil
}

// markEnded records in HERALD_SESSIONS that a session was revoked, so that
// every replica sees it at once rather than when its follower has applied
// the revocation. A session that does not exist or has ended is left as
// it is.
func (s *Service) markEnded(ctx context.Context, sid, why string) error {
	_, err := s.changeSession(ctx, sid, func(sess *sessionRecord) (*sessionWrite, error) {
		if sess == nil || sess.Ended {
			return nil, nil
		}
		sess.Ended, sess.EndedWhy = true, why
		return &sessionWrite{}, nil
	})
	return err
}
