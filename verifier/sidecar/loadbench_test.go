package sidecar

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// loadWorkers and loadDuration shape the load generator of
// BenchmarkHTTPVerify: closed-loop clients, each on its own keep-alive
// connection.
const (
	loadWorkers  = 32
	loadDuration = 5 * time.Second
)

// BenchmarkHTTPVerify measures /v1/verify over HTTP on loopback with a Go
// load generator (requests/s and p99), and, in the same run, a Redis GET
// round trip with the same generator — the lookup the usual shared-denylist
// design makes on every request. Redis is measured when redis-server is
// installed (apt-get install redis-server). Load generator, verifier and
// Redis share the machine. Run it alone:
//
//	go test -run '^$' -bench HTTPVerify -benchtime 1x ./verifier/sidecar
func BenchmarkHTTPVerify(b *testing.B) {
	srv := bustest.RunServer(b)
	conn := bustest.Setup(b, srv, 20*time.Minute)
	k := newTestKeys(b)
	publishKey(b, conn, k.EdKid, k.EdJWK)
	sc, stop := benchSidecarWith(b, conn, Config{DataDir: b.TempDir(), HTTPAddr: "127.0.0.1:0"})
	defer stop()
	if err := sc.WaitReady(b.Context()); err != nil {
		b.Fatal(err)
	}
	toks := make([]string, 1000)
	for i := range toks {
		toks[i] = k.EdToken(b, baseClaims(time.Now()))
	}
	url := sc.URL() + "/v1/verify"

	for b.Loop() {
		rps, p50, p99 := load(b, func(w int) func(i int) error {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			return func(i int) error {
				req.Header.Set("Authorization", "Bearer "+toks[(w*7919+i)%len(toks)])
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				io.Copy(io.Discard, resp.Body) // to EOF, so the connection is reused
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("verify = %d", resp.StatusCode)
				}
				return nil
			}
		})
		b.ReportMetric(rps, "verify-req/s")
		b.ReportMetric(float64(p99.Microseconds()), "verify-p99-µs")
		b.Logf("/v1/verify over HTTP, %d clients: %.0f req/s, p50 %s, p99 %s", loadWorkers, rps, p50, p99)

		addr, ok := startRedis(b)
		if !ok {
			b.Log("redis-server not installed: no Redis comparison")
			continue
		}
		rps, p50, p99 = load(b, func(w int) func(i int) error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			br := bufio.NewReader(c)
			return func(i int) error {
				fmt.Fprintf(c, "GET denied:jti-%d\r\n", (w*7919+i)%len(toks))
				line, err := br.ReadString('\n')
				if err != nil {
					return err
				}
				if !strings.HasPrefix(line, "$-1") { // not denied
					return fmt.Errorf("redis GET = %q", line)
				}
				return nil
			}
		})
		b.ReportMetric(rps, "redis-req/s")
		b.ReportMetric(float64(p99.Microseconds()), "redis-p99-µs")
		b.Logf("Redis GET round trip, %d clients: %.0f req/s, p50 %s, p99 %s", loadWorkers, rps, p50, p99)
	}
}

// load runs loadWorkers closed-loop clients for loadDuration; newWorker
// returns a worker's request function. It returns requests/s, p50 and p99.
func load(b *testing.B, newWorker func(w int) func(i int) error) (rps float64, p50, p99 time.Duration) {
	b.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lats []time.Duration
	)
	deadline := time.Now().Add(loadDuration)
	start := time.Now()
	for w := range loadWorkers {
		do := newWorker(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<16)
			for i := 0; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				if err := do(i); err != nil {
					b.Error(err)
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lats) == 0 {
		b.Fatal("no requests completed")
	}
	slices.Sort(lats)
	return float64(len(lats)) / elapsed.Seconds(), lats[len(lats)/2], lats[len(lats)*99/100]
}

// startRedis runs redis-server on a free loopback port, without
// persistence, for the length of the benchmark.
func startRedis(b *testing.B) (string, bool) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", false
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", b.TempDir())
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	bustest.WaitFor(b, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprint(c, "PING\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "+PONG\r\n" {
			return fmt.Errorf("PING = %q, %v", line, err)
		}
		return nil
	})
	return addr, true
}
