package issuer

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiterIdle is how long an unused per-key limiter is kept.
const limiterIdle = 10 * time.Minute

// limiter bounds token-endpoint requests per source address and per
// client with token buckets (bursts of twice the rate).
type limiter struct {
	perAddr, perClient float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	l    *rate.Limiter
	used time.Time
}

func newLimiter(perAddr, perClient float64) *limiter {
	return &limiter{perAddr: perAddr, perClient: perClient, buckets: make(map[string]*bucket)}
}

// allow reports whether a request from addr (and client, if known) may go
// ahead, and if not how long to wait.
func (l *limiter) allow(addr, client string) (bool, time.Duration) {
	if ok, wait := l.take("a:"+addr, l.perAddr); !ok {
		return false, wait
	}
	if client != "" {
		return l.take("c:"+client, l.perClient)
	}
	return true, 0
}

func (l *limiter) take(key string, perSecond float64) (bool, time.Duration) {
	if perSecond < 0 {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{l: rate.NewLimiter(rate.Limit(perSecond), int(math.Max(1, 2*perSecond)))}
		l.buckets[key] = b
	}
	b.used = now
	if now.Sub(l.swept) > limiterIdle {
		for k, v := range l.buckets {
			if now.Sub(v.used) > limiterIdle {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	l.mu.Unlock()
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
