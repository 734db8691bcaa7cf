package verifier

import (
	"strings"
	"testing"
	"time"
)

func TestHandler_Metrics(t *testing.T) {
	f := newFixture(t)
	tok := f.edToken(t, baseClaims(time.Now()))
	for range 3 {
		get(t, f.sc.URL()+"/v1/verify", tok)
	}
	get(t, f.sc.URL()+"/v1/verify", "a.b.c")
	get(t, f.sc.URL()+"/v1/verify", "")
	resp, body := get(t, f.sc.URL()+"/metrics", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`herald_verify_total{outcome="ok"} 3`,
		`herald_verify_total{outcome="malformed"} 1`,
		`herald_verify_total{outcome="missing_token"} 1`,
		"herald_verify_cache_hits_total 2",
		"herald_verify_cache_entries 1",
		"herald_ready 1",
		"herald_stale 0",
		"# TYPE herald_stream_lag gauge",
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}
