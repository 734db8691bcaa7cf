package issuer

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldsec/herald/internal/ratelimit"
)

// limitKeysMax bounds the keys (source addresses, client ids) each of the
// issuer's rate limiters tracks: past it, the least recently used is
// forgotten. About 250 bytes a key, so at most some 16 MB a limiter.
const limitKeysMax = 1 << 16

// limiter bounds token-endpoint requests per source address and per
// registered client with token buckets (bursts of twice the rate).
type limiter struct {
	perAddr, perClient *ratelimit.Limiter
}

func newLimiter(perAddr, perClient float64, now func() time.Time) *limiter {
	return &limiter{perAddr: bucketsPerSecond(perAddr, now), perClient: bucketsPerSecond(perClient, now)}
}

// bucketsPerSecond returns a limiter of perSecond requests a second per
// key with bursts of twice as many, or nil (no limit) when perSecond is
// negative.
func bucketsPerSecond(perSecond float64, now func() time.Time) *ratelimit.Limiter {
	if perSecond < 0 {
		return nil
	}
	return ratelimit.New(rate.Limit(perSecond), int(math.Max(1, 2*perSecond)), limitKeysMax, now)
}
