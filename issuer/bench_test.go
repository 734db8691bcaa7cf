package issuer

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
)

// BenchmarkSign is the raw signing rate of the issuer's key: the ceiling
// for BenchmarkCreateSession, measured in the same run.
func BenchmarkSign(b *testing.B) {
	for _, alg := range []string{"EdDSA", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			kr, _, err := openKeyring(b.TempDir(), alg)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			claims := &verifier.Claims{Issuer: "https://issuer.test", Subject: "bench", Audience: []string{"herald"},
				IssuedAt: verifier.NewNumericDate(now), ExpiresAt: verifier.NewNumericDate(now.Add(5 * time.Minute)),
				ID: "0123456789abcdef0123456789abcdef", ClientID: "herald", SessionID: "0123456789abcdef0123456789abcdef"}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := sign(kr.Current(), claims); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCreateSession creates sessions concurrently through the
// service, each answered only after its state is committed to Pebble
// (synced) and its two events are acknowledged by JetStream (synced to
// disk). It reports sessions/s and the latency of one creation.
func BenchmarkCreateSession(b *testing.B) {
	s := bustest.RunServer(b)
	svc, _ := openForTest(b, s, b.TempDir(), nil)
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(32) // requests in flight per core, as behind an HTTP server
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		for pb.Next() {
			t0 := time.Now()
			if _, err := svc.CreateSession(b.Context(), SessionRequest{Subject: "bench"}, "bench"); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "sessions/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
