package issuer

import (
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/heraldsec/herald/internal/ratelimit"
)

// Failed client authentication (a wrong client secret, or an unknown
// client) is limited per source address and per registered client id: a
// source may fail clientFailureBurst times at once, then once every
// clientFailureEvery; so may all sources together against one client id.
// Past that, client authentication is answered 429 with Retry-After
// without the secret being checked. Client secrets carry 256 random bits:
// the limits bound the CPU a flood of guesses costs, not the guessing.
// Unknown client ids are limited only by source, so that no caller-chosen
// id becomes a key the issuer keeps.
const (
	clientFailureBurst = 10
	clientFailureEvery = time.Second
	// hashWait is how long a client authentication waits for a turn to
	// compare its secret before the answer is 503 with Retry-After.
	hashWait = 2 * time.Second
)

// clientGuard bounds the cost of client authentication: failures per
// source and per client id, and how many secret comparisons (bcrypt) run
// at once, so that a flood of them leaves the rest of the issuer its CPUs.
type clientGuard struct {
	perSource, perClient *ratelimit.Limiter
	// hashing holds a token per comparison running; waiting counts those
	// waiting for one, at most cap(hashing)*4.
	hashing chan struct{}
	waiting atomic.Int32
}

func newClientGuard(now func() time.Time) *clientGuard {
	return &clientGuard{
		perSource: failureLimiter(clientFailureEvery, clientFailureBurst, limitKeysMax, now),
		perClient: failureLimiter(clientFailureEvery, clientFailureBurst, limitKeysMax, now),
		hashing:   make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
	}
}

func tooManyFailures(wait time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "slow_down", RetryAfter: wait,
		Description: "too many failed client authentications; retry later"}
}

var errHashBusy = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", RetryAfter: time.Second,
	Description: "too many client authentications at once; retry later"}

// compare checks secret against hash (bcrypt) when a turn is free,
// waiting at most hashWait for one; errHashBusy when none came.
func (g *clientGuard) compare(hash []byte, secret string) (bool, error) {
	select {
	case g.hashing <- struct{}{}:
	default:
		if g.waiting.Add(1) > int32(4*cap(g.hashing)) {
			g.waiting.Add(-1)
			return false, errHashBusy
		}
		t := time.NewTimer(hashWait)
		select {
		case g.hashing <- struct{}{}:
			t.Stop()
			g.waiting.Add(-1)
		case <-t.C:
			g.waiting.Add(-1)
			return false, errHashBusy
		}
	}
	defer func() { <-g.hashing }()
	return bcrypt.CompareHashAndPassword(hash, []byte(secret)) == nil, nil
}

// authenticate checks a confidential client's credentials, within the
// limits of clientGuard.
func (s *Service) authenticate(a clientAuth) (*clientRecord, error) {
	if a.ID == "" || a.Secret == "" {
		return nil, invalidClient("client authentication required")
	}
	g := s.clientGuard
	// One failure is taken from each budget before the secret is checked,
	// and given back if it was right: concurrent guesses cannot overdraw.
	bySource, wait := g.perSource.Reserve(a.source)
	if bySource == nil {
		return nil, tooManyFailures(wait)
	}
	rec, ok, err := s.client(a.ID)
	if err != nil {
		bySource.Cancel()
		return nil, err
	}
	hash := s.dummyHash()
	var byClient *ratelimit.Reservation
	if ok {
		if byClient, wait = g.perClient.Reserve(a.ID); byClient == nil {
			bySource.Cancel()
			return nil, tooManyFailures(wait)
		}
		hash = rec.SecretHash
	}
	match, err := g.compare(hash, a.Secret)
	if err != nil { // no turn: not a failure of the caller's
		bySource.Cancel()
		byClient.Cancel()
		return nil, err
	}
	if !match || !ok {
		if g.perSource.Empty(a.source) {
			s.log.Warn("client authentication failures over the limit; source refused for now",
				"source", a.source, "limit", clientFailureBurst, "retry_every", clientFailureEvery)
		}
		return nil, invalidClient("unknown client or wrong secret")
	}
	bySource.Cancel()
	byClient.Cancel()
	if rec.Revoked {
		return nil, invalidClient("client is revoked")
	}
	return rec, nil
}
