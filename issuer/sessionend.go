package issuer

import (
	"context"
	"net/http"
	"slices"

	"github.com/heraldsec/herald/bus"
)

// SessionEndPath ends a session on proof of one of its refresh tokens:
// the current one or one it used up. A verifier in cookie mode calls it at
// logout and at its timeouts: the cookie it holds may carry a refresh token
// that another replica or a copy of the cookie rotated since, which RFC 7009
// revocation takes for unknown and answers 200 without ending anything.
const SessionEndPath = "/v1/sessions/end"

// maxEndReason bounds the reason a caller gives for ending a session.
const maxEndReason = 200

// errSessionInUse refuses to end, on an idle timeout, a session whose
// presented refresh token was rotated since: it is in use elsewhere.
var errSessionInUse = &Error{Status: http.StatusConflict, Code: "session_in_use",
	Description: "the refresh token was rotated since: the session is in use; nothing was done"}

// SessionEnd is the answer of SessionEndPath.
type SessionEnd struct {
	// SessionID is the session that ended.
	SessionID string `json:"session_id"`
	// Seq is the stream sequence of its revocation; 0 when it had ended
	// before (or expired and is gone).
	Seq uint64 `json:"seq,omitempty"`
}

// EndSessionByToken ends session sid, proven by token: its current refresh
// token or one it used up (the last maxUsedRefresh). With ifCurrent, only
// the current one ends it, and a used one is refused with 409
// session_in_use: a verifier ending a session it saw idle learns so that
// another verifier has served it since. A session of a registered client
// also needs that client's authentication. A session
// that has ended already, or is gone from HERALD_SESSIONS (past its
// absolute lifetime), is answered as ended without a new revocation. It
// returns without error only when the session's end is recorded and its
// revocation published; errors wrapping errNotPublished mean the end is
// recorded and the revocation will be published when the bus is back.
func (s *Service) EndSessionByToken(ctx context.Context, sid, token, reason string, ifCurrent bool, auth clientAuth, source string) (*SessionEnd, error) {
	if err := checkIdent("session_id", sid, true); err != nil {
		return nil, err
	}
	if token == "" {
		return nil, badRequest("refresh_token is required")
	}
	if err := checkText("reason", reason, maxEndReason); err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "ended by the holder of its refresh token"
	}
	named, err := s.refreshSessionID(token)
	if err != nil {
		return nil, err
	}
	if named != sid {
		return nil, invalidGrant("the refresh token is not of this session")
	}
	hash := hashToken(token)
	now := s.now()
	seqs, err := s.changeSession(ctx, sid, func(sess *sessionRecord) (*sessionWrite, error) {
		if sess == nil {
			return nil, nil // gone: nothing left to end
		}
		if hash != sess.Refresh && !slices.Contains(sess.Used, hash) {
			return nil, invalidGrant("the refresh token is not of this session")
		}
		if err := s.checkClientForSession(sess, auth); err != nil {
			return nil, err
		}
		if sess.Ended {
			return nil, nil
		}
		if ifCurrent && hash != sess.Refresh {
			return nil, errSessionInUse
		}
		w := s.endSession(sess, now, reason, "client:"+sess.ClientID)
		w.events = append(w.events, s.adminEvent(now, bus.TypeAdminSession, "client:"+sess.ClientID, source, "session.end", sid, reason))
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	res := &SessionEnd{SessionID: sid}
	if len(seqs) > 0 {
		res.Seq = seqs[0]
	}
	return res, nil
}
