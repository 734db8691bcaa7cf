package issuer

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
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

// retryAfter sets the Retry-After header of a 429 or 503 to wait, in whole
// seconds, at least one.
func retryAfter(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
}

// Bounds of the parameters of the OAuth endpoints, in bytes. A request
// with a longer one is refused (400 invalid_request) before anything of
// it is kept.
var maxParamLen = map[string]int{
	"grant_type":      64,
	"client_id":       maxClientIDLen,
	"client_secret":   maxClientSecretLen,
	"refresh_token":   512,
	"scope":           1024,
	"token":           16 << 10,
	"token_type_hint": 64,
}

// Bounds of client credentials: client ids are at most what a session may
// name (bus.MaxValueLen), secrets those this issuer makes with room to
// spare.
const (
	maxClientIDLen     = 256
	maxClientSecretLen = 256
	// maxOtherParamLen bounds parameters the endpoints do not read.
	maxOtherParamLen = 1024
)

// checkParams refuses a form with an over-long parameter, and client
// credentials (from the form or Basic) over their bounds.
func checkParams(r *http.Request) error {
	for k, v := range r.PostForm {
		n, ok := maxParamLen[k]
		if !ok {
			n = maxOtherParamLen
		}
		for _, s := range v {
			if len(s) > n {
				return badRequest(fmt.Sprintf("parameter %.64s is longer than %d bytes", k, n))
			}
		}
	}
	if a, err := parseClientAuth(r); err == nil {
		if len(a.ID) > maxClientIDLen {
			return badRequest(fmt.Sprintf("client_id is longer than %d bytes", maxClientIDLen))
		}
		if len(a.Secret) > maxClientSecretLen {
			return badRequest(fmt.Sprintf("client_secret is longer than %d bytes", maxClientSecretLen))
		}
	}
	return nil
}
