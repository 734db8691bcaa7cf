package verifier

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// BenchmarkCatchUp1M measures a verifier with one million active
// revocations (HERALD_BENCH_REVOCATIONS overrides the count): the catch-up
// time of a fresh verifier reading them all from the stream, the memory it
// then holds, verify and denylist lookup latency against them, and the
// restart time of a verifier that loads them from Pebble. Run it alone:
//
//	go test -run '^$' -bench CatchUp1M -benchtime 1x -timeout 30m ./verifier
//
// The NATS server is the embedded one Herald runs (every write synced).
func BenchmarkCatchUp1M(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("HERALD_BENCH_REVOCATIONS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	srv := bustest.RunServer(b)
	conn := bustest.Setup(b, srv, 20*time.Minute)
	k := newTestKeys(b)
	publishKey(b, conn, k.EdKid, k.EdJWK)

	start := time.Now()
	publishMany(b, conn, n)
	b.Logf("published %d revocations in %s", n, time.Since(start).Round(time.Millisecond))

	for b.Loop() {
		dir := b.TempDir()
		heap0, rss0 := memory()
		// A fresh verifier: everything comes from the stream.
		start = time.Now()
		sc, stop := startCore(b, conn, dir)
		if err := sc.WaitReady(b.Context()); err != nil {
			b.Fatal(err)
		}
		catchUp := time.Since(start)
		if got := sc.Status().Denylist; got != n {
			b.Fatalf("denylist holds %d entries, want %d", got, n)
		}
		heap1, rss1 := memory()
		b.ReportMetric(catchUp.Seconds(), "catchup-s")
		b.ReportMetric(float64(n)/catchUp.Seconds(), "events/s")
		b.ReportMetric(float64(heap1-heap0)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(rss1)/(1<<20), "rss-MiB")
		b.Logf("fresh catch-up of %d revocations: %s (%.0f events/s); heap +%.1f MiB (%.0f B/entry); RSS %.1f MiB (was %.1f)",
			n, catchUp.Round(time.Millisecond), float64(n)/catchUp.Seconds(),
			float64(heap1-heap0)/(1<<20), float64(heap1-heap0)/float64(n), float64(rss1)/(1<<20), float64(rss0)/(1<<20))

		// Lookups: cached verify (denylist checked) and the denylist alone.
		v := sc.Verifier()
		toks := make([]string, 1000)
		for i := range toks {
			c := baseClaims(time.Now())
			if i%2 == 0 {
				c["jti"] = fmt.Sprintf("bench-jti-%d", i*(n/len(toks))) // revoked
			}
			toks[i] = k.EdToken(b, c)
			v.Verify(b.Context(), toks[i])
		}
		verifyLat := make([]time.Duration, 0, 100_000)
		denyLat := make([]time.Duration, 0, 100_000)
		var c Claims
		for i := range cap(verifyLat) {
			tok := toks[i%len(toks)]
			t0 := time.Now()
			v.Verify(b.Context(), tok)
			verifyLat = append(verifyLat, time.Since(t0))
			if i < len(toks) {
				jwtParseUnverified(tok, &c)
			}
			t0 = time.Now()
			_ = v.checkDenylist(&c, k.EdKid)
			denyLat = append(denyLat, time.Since(t0))
		}
		for _, l := range []struct {
			name string
			d    []time.Duration
		}{{"verify-cached", verifyLat}, {"denylist", denyLat}} {
			slices.Sort(l.d)
			p50, p99 := l.d[len(l.d)/2], l.d[len(l.d)*99/100]
			b.ReportMetric(float64(p99.Nanoseconds()), l.name+"-p99-ns")
			b.Logf("%s lookup with %d revocations: p50 %s, p99 %s", l.name, n, p50, p99)
		}
		stop()

		// A restart: the denylist comes from Pebble, nothing from the stream.
		start = time.Now()
		sc, stop = startCore(b, conn, dir)
		if err := sc.WaitReady(b.Context()); err != nil {
			b.Fatal(err)
		}
		restart := time.Since(start)
		if st := sc.Status(); st.EventsApplied != 0 || st.Denylist != n {
			b.Fatalf("after restart: %+v", st)
		}
		b.ReportMetric(restart.Seconds(), "restart-s")
		b.Logf("restart with %d revocations in Pebble: ready in %s", n, restart.Round(time.Millisecond))
		stop()
	}
}

// publishMany publishes n token revocations, bench-jti-0 to n-1, in
// concurrent batches.
func publishMany(b *testing.B, conn *bus.Conn, n int) {
	const batch = 2000
	now := time.Now()
	events := make([]*bus.Event, 0, batch)
	for i := 0; i < n; {
		events = events[:0]
		for ; i < n && len(events) < batch; i++ {
			events = append(events, &bus.Event{
				ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "bench",
				Revocation: &bus.Revocation{Kind: bus.KindToken, Value: fmt.Sprintf("bench-jti-%d", i), At: now, Until: now.Add(20 * time.Minute)},
			})
		}
		if _, err := conn.PublishAll(b.Context(), events...); err != nil {
			b.Fatal(err)
		}
	}
}

// memory returns the live heap after a collection and the process's
// resident set size, in bytes.
func memory() (heap, rss uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if data, err := os.ReadFile(filepath.Join("/proc", "self", "status")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				rss = kb << 10
			}
		}
	}
	return m.HeapAlloc, rss
}
