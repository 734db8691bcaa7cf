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

// newLimiter returns the token endpoint's limits: perAddr requests a
// second per source address, perClient per registered client; a negative
// rate is no limit.
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

// Failed admin authentication is limited per source: a source may present
// authFailureBurst wrong bearer credentials at once, then one more every
// authFailureEvery. Past that, its admin requests are answered 429 with
// Retry-After without their credential being checked, so an online guess
// of a credential runs at that pace at best. A right credential does not
// reset the count, so a low-scope credential buys no extra guesses at an
// admin one. Requests without a bearer credential are not counted: they
// guess nothing.
const (
	authFailureBurst = 10
	authFailureEvery = 6 * time.Second
	// authSourcesMax bounds the sources tracked at once; past it, the
	// least recently seen is forgotten to make room.
	authSourcesMax = limitKeysMax
)

// newAuthLimiter returns the limiter of failed admin authentications
// per source.
func newAuthLimiter(now func() time.Time) *ratelimit.Limiter {
	return failureLimiter(authFailureEvery, authFailureBurst, authSourcesMax, now)
}

// failureLimiter returns a limiter of failures per key: burst at once,
// then one more every every, tracking at most max keys.
func failureLimiter(every time.Duration, burst, max int, now func() time.Time) *ratelimit.Limiter {
	return ratelimit.New(rate.Every(every), burst, max, now)
}
