package issuer

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// p99 returns the 99th percentile of ds.
func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*99/100)]
}

// TestClientAuth_FloodLeavesIssuerResponsive floods client_credentials
// with wrong secrets (for a registered client and for unknown ids) from
// eight loops on four source addresses, at the default bcrypt cost, and
// measures session creation during the flood against the same measure
// without it: its p99 stays within floodLatencyRatio times that (or
// floodLatencyFloor), and the flood is answered 429 or 503 with
// Retry-After.
func TestClientAuth_FloodLeavesIssuerResponsive(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test: skipped under -short")
	}
	const (
		floodLatencyRatio = 10
		floodLatencyFloor = 250 * time.Millisecond
		loops             = 8
		maxFlood          = 2000 // requests in all
		samples           = 40
	)
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), func(s *Service) {
		s.cfg.ClientSecretCost = DefaultClientSecretCost
	})
	cl, err := svc.CreateClient(t.Context(), ClientRequest{Name: "billing"}, "test", "test")
	if err != nil {
		t.Fatal(err)
	}
	admin := clientFrom("127.0.0.100")
	createSessions := func() []time.Duration {
		var ds []time.Duration
		for range samples {
			start := time.Now()
			code, _, body := do(t, admin, "POST", svc.URL()+"/v1/sessions", fuzzAdminToken, "application/json",
				strings.NewReader(`{"sub":"alice"}`))
			if code != http.StatusOK {
				t.Fatalf("create session: %d %s", code, body)
			}
			ds = append(ds, time.Since(start))
		}
		return ds
	}
	base := p99(createSessions())

	var (
		sent    atomic.Int64
		stop    atomic.Bool
		mu      sync.Mutex
		answers = map[int]int{}
		noRetry atomic.Int64
		wg      sync.WaitGroup
	)
	for i := range loops {
		c := clientFrom(fmt.Sprintf("127.0.0.%d", 1+i%4))
		wg.Go(func() {
			for n := 0; !stop.Load() && sent.Add(1) <= maxFlood; n++ {
				id := cl.ID
				if n%2 == 1 {
					id = fmt.Sprintf("cl_unknown%d", n)
				}
				req, _ := http.NewRequestWithContext(t.Context(), "POST", svc.URL()+"/oauth2/token",
					strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(id, "hcs_wrong")
				resp, err := c.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				if (resp.StatusCode == 429 || resp.StatusCode == 503) && resp.Header.Get("Retry-After") == "" {
					noRetry.Add(1)
				}
				mu.Lock()
				answers[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	flooded := p99(createSessions())
	stop.Store(true)
	wg.Wait()
	t.Logf("session creation p99: %v alone, %v under the flood; flood answers %v", base, flooded, answers)
	if bound := max(floodLatencyRatio*base, floodLatencyFloor); flooded > bound {
		t.Errorf("session creation p99 %v under the flood, want at most %v (%d× %v)", flooded, bound, floodLatencyRatio, base)
	}
	if answers[429]+answers[503] == 0 {
		t.Errorf("the flood got no 429 or 503: %v", answers)
	}
	if n := svc.clientGuard.perClient.Len(); n > 1 {
		t.Errorf("failures tracked for %d client ids, want only the registered one's", n)
	}
	if n := noRetry.Load(); n > 0 {
		t.Errorf("%d refusals of the flood without Retry-After", n)
	}
}
