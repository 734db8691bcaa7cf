package browser

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/heraldsec/herald/verifier"
)

// seenEvery is how stale the last-activity time in a cookie may get
// before a response re-issues the cookie; it is the precision of the idle
// timeout.
const seenEvery = time.Minute

// endedMemory is how long a sidecar refuses, from memory, a session it
// ended; by then the session's revocation has long come back from the
// stream into the denylist.
const endedMemory = time.Hour

// refreshGrace is how long after a refresh the cookie from just before it
// is still served, with the refreshed tokens: the requests a browser sent
// before it stored the new cookie arrive within it. An older cookie, or
// that one later, is a copy of the cookie: reuse, which ends the session.
const refreshGrace = 30 * time.Second

// errCookieReuse refuses a cookie of an older generation than the session's
// previous one, or the previous one past refreshGrace.
var errCookieReuse = fmt.Errorf("%w: session cookie replaced by a refresh (reuse)", errSessionEnded)

// handleState is the newest state of a browser session this sidecar knows
// of, so that a request still carrying the cookie from before a refresh
// (sent before the browser stored the new one) uses the new tokens instead
// of presenting a used refresh token, which the issuer would take for
// theft; or the session's end, so that a cookie is refused here from the
// moment of logout, before the revocation comes back from the stream.
type handleState struct {
	st    *cookieState
	ended bool
	// acked holds the session the issuer acknowledged ending: a logout
	// with its cookie needs no other request to the issuer.
	acked string
	at    time.Time // when st was made, by the session clock
	until time.Time // forgotten after
}

// successor reports whether next may stand in for sent: it is the state
// that immediately followed sent, made at most refreshGrace before now.
func successor(sent, next *cookieState, at, now time.Time) bool {
	return next.Gen == sent.Gen+1 && now.Sub(at) <= refreshGrace
}

// flight is one refresh of a browser session on this replica; concurrent
// requests of that session wait for it instead of refreshing again (which
// the issuer would take for refresh token reuse). Across replicas the
// refresh relay plays that part.
type flight struct {
	done chan struct{}
	st   *cookieState
	at   time.Time // when st was made, by the session clock
	c    *verifier.Claims
	kid  string
	err  error
}

// session admits the browser session of a request's cookie: it opens it,
// enforces the idle and absolute timeouts, verifies its access token,
// refreshes it when near expiry, and re-issues the cookie on w when its
// state changed. Errors wrap a reason: verifier.ErrNotReady when no verdict can be
// given now (the cookie is kept), any other when the session is over.
func (b *Sessions) session(ctx context.Context, w http.ResponseWriter, cookies []string) (*cookieState, *verifier.Claims, string, error) {
	if len(cookies) != 1 {
		return nil, nil, "", errCookie
	}
	sent, err := b.seal.open(cookies[0])
	if err != nil {
		return nil, nil, "", err
	}
	st, err := b.newest(sent)
	switch {
	case errors.Is(err, errCookieReuse):
		_ = b.end(ctx, sent, "session cookie reuse") // logged by end; the cookie is refused anyway
		return nil, nil, "", err
	case err != nil:
		return nil, nil, "", err
	}
	now := b.cfg.Now()
	switch {
	case now.Sub(time.Unix(st.Created, 0)) >= b.cfg.MaxAge:
		_ = b.end(ctx, st, "maximum age reached") // logged by end; the cookie is over anyway
		return nil, nil, "", errTooOld
	case now.Sub(time.Unix(st.Seen, 0)) >= b.cfg.Idle:
		_ = b.end(ctx, st, "idle timeout") // logged by end; the cookie is over anyway
		return nil, nil, "", errIdle
	}
	done := b.v.Observe(ctx)
	c, kid, err := b.v.Check(st.Access)
	if (err == nil && b.dueForRefresh(c)) || errors.Is(err, verifier.ErrExpired) {
		nst, nc, nkid, rerr := b.refresh(ctx, st, err != nil)
		switch {
		case nst != nil:
			st, c, kid, err = nst, nc, nkid, rerr
		case errors.Is(rerr, errSessionEnded):
			err = rerr
		case err == nil && errors.Is(rerr, errRefreshElsewhere):
			// Another replica refreshes; the access token serves meanwhile.
		case err == nil:
			// The access token still serves; a later request refreshes.
			b.log.Warn("session refresh failed; retrying on a later request", "sid", st.Session, "err", rerr)
		case errors.Is(rerr, errRefreshLost):
			b.log.Warn("session refresh failed", "sid", st.Session, "err", rerr)
			err = rerr
		default:
			b.log.Warn("session refresh failed", "sid", st.Session, "err", rerr)
			err = errRefreshDown
		}
	}
	if err == nil && c.SessionID != st.Session {
		err = fmt.Errorf("%w: token of another session", verifier.ErrMalformed)
	}
	if err == nil && c.Confirmation != nil && c.Confirmation.JKT != "" {
		err = verifier.ErrDPoPRequired // a DPoP-bound token needs the key's holder, not a cookie
	}
	done(err)
	if err != nil && !errors.Is(err, verifier.ErrNotReady) {
		return nil, nil, "", err
	}
	if err == nil && now.Sub(time.Unix(st.Seen, 0)) >= seenEvery {
		next := *st
		next.Seen = now.Unix()
		st = &next
	}
	if st != sent {
		b.setCookie(w.Header(), st, now)
	}
	return st, c, kid, err
}

// dueForRefresh reports whether the access token behind a session has
// less than a third of its lifetime left, by the verifier's token clock.
func (b *Sessions) dueForRefresh(c *verifier.Claims) bool {
	return b.v.Remaining(c) <= lifetime(c)/3
}

// setCookie adds the Set-Cookie of st to h, living until the session's
// maximum age.
func (b *Sessions) setCookie(h http.Header, st *cookieState, now time.Time) {
	v, err := b.seal.seal(st)
	if err != nil {
		b.log.Error("seal session cookie", "sid", st.Session, "err", err)
		return
	}
	h.Add("Set-Cookie", sessionCookie(v, time.Unix(st.Created, 0).Add(b.cfg.MaxAge).Sub(now)).String())
	h.Set("Cache-Control", "no-store")
}

// newest returns the newest state this sidecar knows of the session st
// is a state of. It fails with errSessionEnded when that session ended,
// and with errCookieReuse when st is older than the state just before the
// newest, or is that one past refreshGrace.
func (b *Sessions) newest(st *cookieState) (*cookieState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.handles[st.Handle]
	switch {
	case h == nil:
		return st, nil
	case h.ended:
		return nil, errSessionEnded
	case h.st.Gen <= st.Gen:
		return st, nil
	case !successor(st, h.st, h.at, b.cfg.Now()):
		return nil, errCookieReuse
	}
	n := *h.st
	n.Seen = max(n.Seen, st.Seen)
	return &n, nil
}

// endedAtIssuer reports whether the issuer acknowledged ending the
// session st is a state of, as far as this sidecar remembers.
func (b *Sessions) endedAtIssuer(st *cookieState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.handles[st.Handle]
	return h != nil && h.ended && h.acked == st.Session
}

// remember records the newest state of a session, made at, or its end,
// until until. The caller holds b.mu.
func (b *Sessions) remember(st *cookieState, ended bool, at, until time.Time) {
	if h := b.handles[st.Handle]; h != nil && !ended && (h.ended || h.st.Gen > st.Gen) {
		return
	}
	b.handles[st.Handle] = &handleState{st: st, ended: ended, at: at, until: until}
	if b.puts++; b.puts%1024 == 0 {
		now := b.cfg.Now()
		for k, h := range b.handles {
			if now.After(h.until) {
				delete(b.handles, k)
			}
		}
	}
}

// refresh rotates the session's tokens, once for all the requests of a
// session that need it at the same time on this replica, and once across
// replicas through the relay. expired says whether the caller's access token
// has expired: if not, it does not wait for another replica's refresh
// (errRefreshElsewhere). It returns the new state whenever the issuer
// rotated, even if the new token then fails to verify, so that the new
// refresh token is not lost.
func (b *Sessions) refresh(ctx context.Context, st *cookieState, expired bool) (*cookieState, *verifier.Claims, string, error) {
	for attempt := 1; ; attempt++ {
		nst, c, kid, err := b.refreshOnce(ctx, st, expired)
		// A flight led by a request whose token had not expired yet did not
		// wait for the other replica; this one must.
		if !expired || attempt == 3 || !errors.Is(err, errRefreshElsewhere) {
			return nst, c, kid, err
		}
	}
}

// refreshOnce joins the session's flight on this replica, or leads one.
func (b *Sessions) refreshOnce(ctx context.Context, st *cookieState, expired bool) (*cookieState, *verifier.Claims, string, error) {
	b.mu.Lock()
	if h := b.handles[st.Handle]; h != nil && h.ended {
		b.mu.Unlock()
		return nil, nil, "", errSessionEnded
	} else if h != nil && h.st.Gen > st.Gen {
		// A refresh finished since st was read: its tokens are the live ones.
		next, ok := h.st, successor(st, h.st, h.at, b.cfg.Now())
		b.mu.Unlock()
		if !ok {
			_ = b.end(ctx, st, "session cookie reuse") // logged by end
			return nil, nil, "", errCookieReuse
		}
		c, kid, err := b.v.Check(next.Access)
		return next, c, kid, err
	}
	if f := b.flights[st.Handle]; f != nil {
		b.mu.Unlock()
		select {
		case <-f.done:
			return f.st, f.c, f.kid, f.err
		case <-ctx.Done():
			return nil, nil, "", ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	b.flights[st.Handle] = f
	b.mu.Unlock()

	f.st, f.at, f.c, f.kid, f.err = b.rotate(ctx, st, expired)

	b.mu.Lock()
	delete(b.flights, st.Handle)
	switch {
	case f.st != nil:
		b.remember(f.st, false, f.at, b.cfg.Now().Add(2*b.v.Leeway()+lifetime(f.c)))
	case errors.Is(f.err, errSessionEnded):
		b.remember(st, true, time.Time{}, b.cfg.Now().Add(endedMemory))
	}
	b.mu.Unlock()
	close(f.done)
	return f.st, f.c, f.kid, f.err
}

// lifetime is how long the token of c lives; a quarter hour when unknown.
func lifetime(c *verifier.Claims) time.Duration {
	if c == nil {
		return 15 * time.Minute
	}
	return c.ExpiresAt.Sub(c.IssuedAt.Time)
}

// rotate returns the session's next state, with when it was made and the
// verified claims of its new access token: refreshed here, if this replica
// wins the claim on the refresh (or the relay is unavailable), else as the
// replica that won it refreshed it. Another replica's result made more than
// refreshGrace ago is for a copy of the cookie: reuse, which ends the
// session.
func (b *Sessions) rotate(ctx context.Context, st *cookieState, expired bool) (*cookieState, time.Time, *verifier.Claims, string, error) {
	cl, res, err := b.rly.claim(ctx, st)
	switch {
	case errors.Is(err, errRelayFull):
		return nil, time.Time{}, nil, "", err
	case err != nil:
		// As a single replica would; the issuer still refuses a reuse.
		next, c, kid, err := b.rotateAtIssuer(ctx, st)
		return next, b.cfg.Now(), c, kid, err
	case cl != nil:
		next, c, kid, rerr := b.rotateAtIssuer(ctx, st)
		at := b.cfg.Now()
		b.rly.settle(ctx, cl, st, next, at, rerr)
		return next, at, c, kid, rerr
	case res == nil && !expired:
		return nil, time.Time{}, nil, "", errRefreshElsewhere
	case res == nil:
		if res, err = b.rly.wait(ctx, st); err != nil {
			return nil, time.Time{}, nil, "", err
		}
	}
	if res.Ended {
		return nil, time.Time{}, nil, "", fmt.Errorf("%w: the issuer refused another replica's refresh", errSessionEnded)
	}
	if !successor(st, res.Next, res.At, b.cfg.Now()) {
		_ = b.end(ctx, st, "session cookie reuse") // logged by end
		return nil, time.Time{}, nil, "", errCookieReuse
	}
	next := res.Next
	next.Seen = max(next.Seen, st.Seen)
	c, kid, err := b.v.Check(next.Access)
	return next, res.At, c, kid, err
}

// rotateAtIssuer presents the session's refresh token to the issuer and
// returns the session's next state with the verified claims of its new
// access token.
func (b *Sessions) rotateAtIssuer(ctx context.Context, st *cookieState) (*cookieState, *verifier.Claims, string, error) {
	ans, err := b.iss.refresh(ctx, st.Refresh)
	if err != nil {
		return nil, nil, "", err
	}
	next := *st
	next.Gen++
	next.Access, next.Refresh = ans.AccessToken, ans.RefreshToken
	c, kid, err := b.v.Check(ans.AccessToken)
	if err != nil {
		return &next, nil, "", err
	}
	return &next, c, kid, nil
}

// end ends a session at the issuer, which publishes its revocation to
// every verifier, and refuses its cookie here from now on, cutting the
// requests it has open here.
func (b *Sessions) end(ctx context.Context, st *cookieState, why string) error {
	return b.endSession(ctx, st, why, true)
}

// endSession is end; with cut false it leaves the session's requests open
// here (the one replacing the session by a new login is among them) until
// its revocation comes back from the stream.
func (b *Sessions) endSession(ctx context.Context, st *cookieState, why string, cut bool) error {
	b.mu.Lock()
	b.remember(st, true, time.Time{}, b.cfg.Now().Add(endedMemory))
	var cause error
	if cut {
		cause = errSessionEnded
	}
	b.forget(st.Handle, cause)
	b.mu.Unlock()
	if err := b.iss.endSession(ctx, st.Session, st.Refresh, why, false); err != nil {
		b.log.Warn("could not end session at the issuer", "sid", st.Session, "why", why, "err", err)
		return err
	}
	b.mu.Lock()
	if h := b.handles[st.Handle]; h != nil && h.ended {
		h.acked = st.Session
	}
	b.mu.Unlock()
	b.log.Info("browser session ended", "sid", st.Session, "why", why)
	return nil
}
