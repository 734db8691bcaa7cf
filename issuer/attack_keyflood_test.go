package issuer_test

import (
	"crypto/rand"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/issuer"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestAttackLogout_UnknownKidFloodFetchesOnce: a flood of logout tokens
// naming kids the provider never published costs the provider at most
// one key set fetch per interval, as documented, however many arrive: the
// logout endpoint's fetch before refusing and the refresh it prompts are
// one, not two.
func TestAttackLogout_UnknownKidFloodFetchesOnce(t *testing.T) {
	idp := federationtest.NewIdP(t)
	var hits atomic.Int64
	counted := idp.Config.Handler
	idp.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			hits.Add(1)
		}
		counted.ServeHTTP(w, r)
	})
	clock := &fakeClock{now: time.Now()}
	s := bustest.RunServer(t)
	trust := []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust, Now: clock.Now})
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := svc.TrustStatus(); len(st) != 1 || st[0].LastRefresh.IsZero() {
			return errors.New("keys not fetched yet")
		}
		return nil
	})
	start := hits.Load()
	flood := func() {
		for range 20 {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": idp.URL, "aud": "herald",
				"iat": clock.Now().Unix(), "jti": rand.Text(), "sid": "s", "events": map[string]any{
					"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})
			tok.Header["kid"] = rand.Text() // a kid the provider never published
			raw, err := tok.SignedString(idp.Key)
			if err != nil {
				t.Fatal(err)
			}
			if code, body, _ := postLogout(t, svc, raw); code != http.StatusBadRequest {
				t.Fatalf("logout with an unknown kid: %d %s", code, body)
			}
		}
	}
	flood()
	if got := hits.Load() - start; got != 0 {
		t.Errorf("right after a fetch, the flood fetched the key set %d times, want 0", got)
	}
	// An interval later, the first logout's answer comes after the fetch
	// made before refusing it, and after any refresh it prompted (both
	// hold the issuer's refresh lock).
	clock.Advance(31 * time.Second)
	flood()
	if got := hits.Load() - start; got != 1 {
		t.Errorf("an interval later, the flood fetched the key set %d times, want 1", got)
	}
}
