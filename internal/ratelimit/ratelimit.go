// Package ratelimit is the keyed rate limiter of Herald's issuer: a token
// bucket per key (a source address, a registered client), with a fixed
// bound on how many keys it tracks, so that no caller can grow it without
// limit by inventing keys.
package ratelimit

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter holds a token bucket per key: burst requests at once, then limit
// per second. It tracks at most max keys; a new key past that evicts the
// least recently used one, which starts again with a full bucket if it
// comes back. A nil *Limiter allows everything. It is safe for concurrent
// use.
type Limiter struct {
	limit rate.Limit
	burst int
	max   int
	now   func() time.Time

	mu    sync.Mutex
	keys  map[string]*list.Element // of *entry
	order *list.List               // front: most recently used
}

type entry struct {
	key string
	l   *rate.Limiter
}

// New returns a Limiter of burst requests at once and limit per second
// after, per key, tracking at most max keys (at least 1), on the clock now
// (time.Now if nil).
func New(limit rate.Limit, burst, max int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{limit: limit, burst: max1(burst), max: max1(max), now: now,
		keys: make(map[string]*list.Element), order: list.New()}
}

func max1(n int) int { return max(n, 1) }

// Allow takes one request from key's bucket. When the bucket is empty it
// takes nothing and reports how long until it holds one again.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	r, wait := l.Reserve(key)
	return r != nil || l == nil, wait
}

// Reservation is one request taken from a key's bucket, which can be given
// back.
type Reservation struct {
	l  *Limiter
	r  *rate.Reservation
	at time.Time
}

// Reserve takes one request from key's bucket and returns it as a
// Reservation to be given back (Cancel) if the request should not count.
// When the bucket is empty it returns nil and how long until it holds one
// again. A nil Limiter returns a nil Reservation and no wait: callers of
// a possibly nil Limiter use Allow.
func (l *Limiter) Reserve(key string) (*Reservation, time.Duration) {
	if l == nil {
		return nil, 0
	}
	now := l.now()
	l.mu.Lock()
	b := l.bucket(key)
	r := b.ReserveN(now, 1)
	l.mu.Unlock()
	if d := r.DelayFrom(now); d > 0 || !r.OK() {
		r.CancelAt(now)
		if !r.OK() {
			d = time.Second
		}
		return nil, d
	}
	return &Reservation{l: l, r: r, at: now}, 0
}

// bucket returns key's bucket, made and tracked if new, and marks it used.
// l.mu is held.
func (l *Limiter) bucket(key string) *rate.Limiter {
	if el, ok := l.keys[key]; ok {
		l.order.MoveToFront(el)
		return el.Value.(*entry).l
	}
	for len(l.keys) >= l.max {
		last := l.order.Back()
		delete(l.keys, last.Value.(*entry).key)
		l.order.Remove(last)
	}
	e := &entry{key: key, l: rate.NewLimiter(l.limit, l.burst)}
	l.keys[key] = l.order.PushFront(e)
	return e.l
}

// Cancel gives the reserved request back to its bucket.
func (r *Reservation) Cancel() {
	if r != nil {
		r.r.CancelAt(r.at)
	}
}

// Empty reports whether key's bucket has no whole request left.
func (l *Limiter) Empty(key string) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.keys[key]
	return ok && el.Value.(*entry).l.TokensAt(l.now()) < 1
}

// Len returns how many keys are tracked.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// Source returns the key a request from remoteAddr (an http.Request's
// RemoteAddr) is limited by: the TCP peer's address, IPv4-mapped IPv6
// addresses as IPv4, other IPv6 addresses by their /64, which one host
// commonly holds whole. X-Forwarded-For is not trusted.
func Source(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if a = a.Unmap().WithZone(""); a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}
