package browser

import (
	"context"
	"errors"
	"time"

	"github.com/heraldsec/herald/verifier"
)

// A browser session ends at its idle and absolute timeouts even when no
// request presents its cookie: each replica remembers the sessions it
// served (at most maxServed), and a sweep ends at the issuer those past a
// timeout and cuts the requests still open with them (streams, upgraded
// connections). The memory is per replica; a session none remembers (a
// replica restarted, or the memory was full) ends at the issuer's own idle
// and absolute timeouts, and its tokens when they expire.

// Bounds of the sweep.
const (
	// maxServed bounds the sessions a replica remembers for the sweep.
	maxServed = 1 << 16
	// sweepRetry is how long the sweep waits before ending again a session
	// the issuer did not acknowledge ending.
	sweepRetry = 30 * time.Second
	// maxSweepEnds bounds the sessions one sweep ends at the issuer; the
	// next sweep ends the others.
	maxSweepEnds = 256
)

// servedSession is what a replica remembers of a session it served: only
// what ending it takes, no access token.
type servedSession struct {
	sid     string
	refresh string // the newest refresh token seen here
	gen     uint64
	created time.Time
	seen    time.Time     // last activity seen here, by the session clock
	at      time.Time     // when this replica first saw gen
	life    time.Duration // of the access tokens
	reqs    map[*servedRequest]struct{}
	retry   time.Time // not before, after a failed end
}

// servedRequest is a request in flight that a session admitted.
type servedRequest struct {
	cancel context.CancelCauseFunc
}

// idleSince returns when the session was last active as far as this
// replica can tell: its last request here, or, if later, the end of life
// of the access token it last saw: another replica serving the session
// after that would have refreshed it, which the issuer then reports
// (errSessionInUse).
func (s *servedSession) idleSince() time.Time {
	return later(s.seen, s.at.Add(s.life))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// admit remembers that st (with the claims c of its access token) admits
// a request, and returns the request's context, cut at the session's
// absolute timeout and by the sweep, and the function that ends it.
func (b *Sessions) admit(ctx context.Context, st *cookieState, c *verifier.Claims) (context.Context, func()) {
	now := b.cfg.Now()
	created := time.Unix(st.Created, 0)
	ctx, cancel := context.WithCancelCause(ctx)
	ctx, stop := context.WithTimeoutCause(ctx, created.Add(b.cfg.MaxAge).Sub(now), errTooOld)
	req := &servedRequest{cancel: cancel}

	b.mu.Lock()
	s := b.note(st, c, now)
	if s != nil {
		s.reqs[req] = struct{}{}
	}
	b.mu.Unlock()

	return ctx, func() {
		stop()
		cancel(nil)
		if s != nil {
			b.mu.Lock()
			delete(s.reqs, req)
			b.mu.Unlock()
		}
	}
}

// note remembers that session state st, with the claims c of its access
// token, was active at now, and returns the memory of its session; nil
// when there is no room for a new one. The caller holds b.mu.
func (b *Sessions) note(st *cookieState, c *verifier.Claims, now time.Time) *servedSession {
	s := b.served[st.Handle]
	if s == nil && len(b.served) < maxServed {
		s = &servedSession{sid: st.Session, created: time.Unix(st.Created, 0), reqs: make(map[*servedRequest]struct{})}
		b.served[st.Handle] = s
	} else if s == nil {
		if !b.servedFull {
			b.servedFull = true
			b.log.Warn("too many browser sessions to remember; the others end at their timeouts when a request presents them, or at the issuer's", "max", maxServed)
		}
		return nil
	}
	if s.refresh == "" || st.Gen > s.gen {
		s.refresh, s.gen, s.at = st.Refresh, st.Gen, now
		s.life = c.ExpiresAt.Sub(c.IssuedAt.Time)
	}
	s.seen = later(s.seen, later(time.Unix(st.Seen, 0), now))
	return s
}

// forget drops the memory of a session that ended, cutting its requests
// with cause unless it is nil. The caller holds b.mu.
func (b *Sessions) forget(handle string, cause error) {
	s := b.served[handle]
	if s == nil {
		return
	}
	for r := range s.reqs {
		if cause != nil {
			r.cancel(cause)
		}
	}
	delete(b.served, handle)
	if len(b.served) < maxServed {
		b.servedFull = false
	}
}

// Run ends the sessions past a timeout every Config.SweepEvery until ctx
// ends, then returns nil.
func (b *Sessions) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			b.sweepOnce(ctx)
		}
	}
}

// sweepOnce ends at the issuer the sessions this replica remembers that
// are past their absolute timeout (cutting their requests at once) or past
// their idle timeout as far as it can tell (only if no other replica has
// refreshed them since: errSessionInUse, after which it forgets them).
func (b *Sessions) sweepOnce(ctx context.Context) {
	type due struct {
		handle string
		s      servedSession
		why    string
		idle   bool
	}
	now := b.cfg.Now()
	var dues []due
	b.mu.Lock()
	for h, s := range b.served {
		if len(dues) == maxSweepEnds {
			break
		}
		switch {
		case now.Before(s.retry):
		case !now.Before(s.created.Add(b.cfg.MaxAge)):
			for r := range s.reqs {
				r.cancel(errTooOld)
			}
			dues = append(dues, due{h, *s, "maximum age reached", false})
		case now.Sub(s.idleSince()) >= b.cfg.Idle:
			dues = append(dues, due{h, *s, "idle timeout", true})
		}
	}
	b.mu.Unlock()

	for _, d := range dues {
		err := b.iss.endSession(ctx, d.s.sid, d.s.refresh, d.why, d.idle)
		b.mu.Lock()
		cur := b.served[d.handle]
		switch {
		case cur == nil:
		case err == nil:
			st := &cookieState{Handle: d.handle, Gen: d.s.gen, Session: d.s.sid, Refresh: d.s.refresh}
			b.remember(st, true, time.Time{}, b.cfg.Now().Add(endedMemory))
			cause := errIdle
			if !d.idle {
				cause = errTooOld
			}
			b.forget(d.handle, cause)
		case errors.Is(err, errSessionInUse):
			if cur.gen == d.s.gen {
				delete(b.served, d.handle) // the replica that refreshed it remembers it
			}
		default:
			cur.retry = now.Add(sweepRetry)
		}
		b.mu.Unlock()
		switch {
		case err == nil:
			b.log.Info("browser session ended", "sid", d.s.sid, "why", d.why)
		case !errors.Is(err, errSessionInUse):
			b.log.Warn("could not end session at the issuer; retrying", "sid", d.s.sid, "why", d.why, "err", err)
		}
	}
}
