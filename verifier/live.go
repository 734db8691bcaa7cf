package verifier

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldsec/herald/bus"
)

// LiveSet tracks the requests in flight that a token admitted, with the
// token's claims, so that a revocation applied while one runs ends it:
// a WebSocket, a Server-Sent Events stream or any long response opened with
// a token is closed when a revocation matching that token arrives, not only
// requests made after it. It matches exactly as checkDenylist does,
// revocations limited to one issuer included. A
// Verifier whose Config.Live is set tracks the requests it admits in it
// (Middleware, ServeAdmitted); whoever applies revocations (a sidecar's
// Follower) calls Revoke. It is safe for concurrent use.
type LiveSet struct {
	mu     sync.Mutex
	all    map[*liveRequest]struct{}
	byKey  map[string]map[*liveRequest]struct{} // by denyKey of each revocable dimension
	ended  atomic.Uint64                        // requests ended by a revocation
	opened atomic.Uint64                        // requests tracked since start
}

// liveRequest is one tracked request.
type liveRequest struct {
	iat    time.Time
	iss    string
	keys   []string
	cancel context.CancelCauseFunc
}

// NewLiveSet returns an empty LiveSet.
func NewLiveSet() *LiveSet {
	return &LiveSet{all: make(map[*liveRequest]struct{}), byKey: make(map[string]map[*liveRequest]struct{})}
}

// add tracks a request admitted by claims c of a token signed with kid;
// cancel ends it. Call remove when the request is over.
func (l *LiveSet) add(c *Claims, kid string, cancel context.CancelCauseFunc) *liveRequest {
	r := &liveRequest{iat: c.IssuedAt.Time, iss: c.Issuer, cancel: cancel, keys: make([]string, 0, 14)}
	// Each dimension by its key for every issuer and its key limited to
	// the token's issuer.
	dim := func(k bus.Kind, value string) {
		if value == "" {
			return
		}
		r.keys = append(r.keys, denyKey(k, value))
		if c.Issuer != "" {
			r.keys = append(r.keys, denyKeyFor(k, c.Issuer, value))
		}
	}
	dim(bus.KindToken, c.ID)
	dim(bus.KindSubject, c.Subject)
	if c.Email != c.Subject {
		dim(bus.KindSubject, c.Email)
	}
	dim(bus.KindKey, kid)
	dim(bus.KindSession, c.SessionID)
	dim(bus.KindClient, c.ClientID)
	dim(bus.KindTenant, c.Tenant)
	l.opened.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all[r] = struct{}{}
	for _, k := range r.keys {
		set := l.byKey[k]
		if set == nil {
			set = make(map[*liveRequest]struct{})
			l.byKey[k] = set
		}
		set[r] = struct{}{}
	}
	return r
}

// remove stops tracking r.
func (l *LiveSet) remove(r *liveRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.all, r)
	for _, k := range r.keys {
		if set := l.byKey[k]; set != nil {
			delete(set, r)
			if len(set) == 0 {
				delete(l.byKey, k)
			}
		}
	}
}

// Len returns how many requests are tracked.
func (l *LiveSet) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// Revoke ends every tracked request that one of revs matches, canceling
// its context with a cause wrapping ErrRevoked, and returns how many it
// ended. Call it once the batch holding revs is committed to the denylist
// (Follower's OnApply), so a request ended here would also be refused if
// retried.
func (l *LiveSet) Revoke(revs []*bus.Revocation) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	end := func(r *liveRequest, rev *bus.Revocation) {
		if rev.Kind.ByIssuedAt() && r.iat.After(rev.At) {
			return // issued after the revocation
		}
		r.cancel(fmt.Errorf("%w: %s", ErrRevoked, rev.Kind))
		delete(l.all, r) // remove, when it runs, finds nothing
		n++
	}
	for _, rev := range revs {
		if rev.Kind == bus.KindAll {
			for r := range l.all {
				if rev.Issuer == "" || r.iss == rev.Issuer {
					end(r, rev)
				}
			}
			continue
		}
		for _, v := range rev.AllValues() {
			for r := range l.byKey[denyKeyFor(rev.Kind, rev.Issuer, v)] {
				if _, ok := l.all[r]; ok {
					end(r, rev)
				}
			}
		}
	}
	l.ended.Add(uint64(n))
	return n
}

// Ended returns how many requests a revocation ended since l was made.
func (l *LiveSet) Ended() uint64 { return l.ended.Load() }

// CloseAll ends every tracked request, canceling its context with cause.
func (l *LiveSet) CloseAll(cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for r := range l.all {
		r.cancel(cause)
		delete(l.all, r)
	}
}
