package issuer

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/heraldsec/herald/bus/bustest"
)

// heapAlloc returns the live heap after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// floodHeapBound is the most the issuer's heap may grow under
// TestTokenEndpoint_LongClientIDFloodBoundedHeap (SECURITY.md states it).
const floodHeapBound = 16 << 20

// TestTokenEndpoint_LongClientIDFloodBoundedHeap sends 2,000 token
// requests, each with its own random long client_id (60 KB in the form,
// 19 KB in Basic credentials), from ten loopback source addresses. They are
// refused as invalid_request before the issuer keeps anything of them, and
// the heap grows by less than floodHeapBound.
func TestTokenEndpoint_LongClientIDFloodBoundedHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test: skipped under -short")
	}
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), nil)
	const (
		requests = 2000
		sources  = 10
		workers  = 8
	)
	clients := make([]*http.Client, sources)
	for i := range clients {
		clients[i] = clientFrom(fmt.Sprintf("127.0.0.%d", i+1))
	}
	before := heapAlloc()
	var (
		mu     sync.Mutex
		status = map[string]int{}
		wg     sync.WaitGroup
		next   = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				// 60 KB in the form; in Basic credentials, 19 KB, what
				// fits in the server's header bound (httpserve.MaxHeaderBytes).
				basic := i%2 == 1
				raw := make([]byte, 45<<10)
				if basic {
					raw = raw[:14<<10]
				}
				_, _ = rand.Read(raw)
				id := base64.RawURLEncoding.EncodeToString(raw)
				vals := url.Values{"grant_type": {"client_credentials"}}
				if !basic {
					vals.Set("client_id", id)
				}
				req, err := http.NewRequestWithContext(t.Context(), "POST", svc.URL()+"/oauth2/token", strings.NewReader(vals.Encode()))
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if basic {
					req.SetBasicAuth(id, "x")
				}
				resp, err := clients[i%sources].Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var body struct {
					Error string `json:"error"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				mu.Lock()
				status[fmt.Sprintf("%d %s", resp.StatusCode, body.Error)]++
				mu.Unlock()
			}
		})
	}
	for i := range requests {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	after := heapAlloc()
	t.Logf("answers: %v; heap %d MB before, %d MB after", status, before>>20, after>>20)
	if after > before && after-before > floodHeapBound {
		t.Errorf("heap grew by %d MB under the flood, want less than %d MB", (after-before)>>20, floodHeapBound>>20)
	}
	if n := svc.limits.perClient.Len(); n != 0 {
		t.Errorf("the per-client limiter tracks %d client ids, want none: none is registered", n)
	}
	if n := svc.limits.perAddr.Len(); n > sources {
		t.Errorf("the per-address limiter tracks %d keys, want at most the %d sources", n, sources)
	}
	for s := range status {
		if !strings.HasSuffix(s, "invalid_request") && !strings.HasPrefix(s, "429 ") {
			t.Errorf("answer %q to an over-long client_id, want 400 invalid_request (or 429)", s)
		}
	}
}
