package bench

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldsec/herald/store"
)

// Go benchmarks of the hot paths the scenarios compare, with benchstat-
// friendly names: go test -run '^$' -bench . -count 6 ./bench | benchstat -

// BenchmarkDenylistCheck is one token's denylist check, the seven
// in-memory lookups Verify makes, against denylists of 10k and 1M
// unrelated entries.
func BenchmarkDenylistCheck(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			db, err := store.Open(filepath.Join(b.TempDir(), "denylist"), store.Options{Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if err := fillDenylist(db, n, "unrelated"); err != nil {
				b.Fatal(err)
			}
			keys := checkKeys("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "kid", "alice", "billing", "acme")
			b.ReportAllocs()
			for b.Loop() {
				for _, k := range keys[:3] {
					if db.Contains(k) {
						b.Fatal("found an entry")
					}
				}
				for _, k := range keys[3:] {
					if _, ok := db.Lookup(k); ok {
						b.Fatal("found an entry")
					}
				}
			}
		})
	}
}

// benchRedis starts redis-server for a benchmark, or skips it.
func benchRedis(b *testing.B) *redisServer {
	b.Helper()
	rs, err := startRedis(b.Context(), DefaultRedisServer, b.TempDir())
	if err != nil {
		b.Skip(err)
	}
	b.Cleanup(func() {
		if err := rs.stop(); err != nil {
			b.Error(err)
		}
	})
	return rs
}

// BenchmarkRedisRoundTrip is the shared-Redis design's denylist check: one
// MGET of the same seven keys, and a single GET, from one client.
func BenchmarkRedisRoundTrip(b *testing.B) {
	rs := benchRedis(b)
	conn, err := dialRedis(b.Context(), rs.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	keys := checkKeys("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "kid", "alice", "billing", "acme")
	for _, bc := range []struct {
		name string
		args []string
	}{{"op=MGET7", append([]string{"MGET"}, keys...)}, {"op=GET", []string{"GET", keys[0]}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := conn.do(bc.args...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApp is one request to each baseline design's application, from
// parallel keep-alive clients: Herald embedded, Herald's sidecar asked
// per request, a shared Redis denylist, and introspection.
func BenchmarkApp(b *testing.B) {
	if _, err := lookRedis(DefaultRedisServer); err != nil {
		b.Skip(err)
	}
	cfg := BaselineConfig{Dir: b.TempDir(), Tokens: 256, Clients: 16}
	cfg.setDefaults()
	env, err := startBaselineEnv(b.Context(), cfg, cfg.Tokens)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := env.Close(); err != nil {
			b.Error(err)
		}
	}()
	client := newLoadClient(cfg.Clients)
	defer client.CloseIdleConnections()
	for _, d := range env.designs {
		b.Run("design="+d.name, func(b *testing.B) {
			b.SetParallelism(cfg.Clients / 2) // 16 clients on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					req, err := d.check.request(context.Background(), env.sessions[i%len(env.sessions)].AccessToken)
					if err == nil {
						var status int
						status, _, err = do(client, req)
						if err == nil && status != http.StatusOK {
							err = fmt.Errorf("status %d", status)
						}
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCatchUp is a fresh in-process verifier reading and applying
// 10k and 100k revocations from the stream until it is ready.
func BenchmarkCatchUp(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("revocations=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			c, err := startBus(b.Context(), dir)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if err := publishRevocations(b.Context(), c.conn, n, "bench", nil); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				sc, err := c.startSidecar(b.Context(), fmt.Sprintf("catch-up-%d", i), filepath.Join(dir, fmt.Sprintf("v%d", i)), false)
				if err != nil {
					b.Fatal(err)
				}
				if err := waitUntil(b.Context(), 5*time.Minute, sc.Ready); err != nil {
					b.Fatal(err)
				}
				if err := sc.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
