package issuer

import (
	"context"
	"fmt"
	"hash/fnv"
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
			kr, _, err := openKeyring(b.TempDir(), alg, nil)
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
// service, each answered only after it is written to HERALD_SESSIONS and
// its two events are acknowledged by JetStream (both synced to disk). It
// reports sessions/s and the latency of one creation.
func BenchmarkCreateSession(b *testing.B) {
	s := bustest.RunServer(b)
	svc, _ := openForTest(b, s, b.TempDir(), nil)
	runTimed(b, "sessions/s", func() func() error {
		return func() error {
			_, err := svc.CreateSession(b.Context(), SessionRequest{Subject: "bench"}, "bench")
			return err
		}
	})
}

// runTimed runs the operations that newOp's functions do, 32 goroutines
// per core as requests behind an HTTP server, each with its own op, and
// reports their rate under rate and the latency of one.
func runTimed(b *testing.B, rate string, newOp func() func() error) {
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		op := newOp()
		var local []time.Duration
		for pb.Next() {
			t0 := time.Now()
			if err := op(); err != nil {
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
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), rate)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRefresh compares refresh throughput of the two places a
// session can live, in one run: "pebble" is the rotation of the version
// before HERALD_SESSIONS (session and refresh tokens in this replica's
// synced Pebble store, a lock per session, the token.issued event through
// the outbox), reproduced by pebbleRefresh; "kv-cas" is the service's
// refresh (the event staged in the outbox, the rotation a compare-and-set
// on the shared bucket, then the event published). Every goroutine rotates
// its own session's chain.
func BenchmarkRefresh(b *testing.B) {
	for _, mode := range []string{"pebble", "kv-cas"} {
		b.Run(mode, func(b *testing.B) {
			s := bustest.RunServer(b)
			svc, _ := openForTest(b, s, b.TempDir(), nil)
			var locks [256]sync.Mutex
			runTimed(b, "refreshes/s", func() func() error {
				sess, err := svc.CreateSession(b.Context(), SessionRequest{Subject: "bench"}, "bench")
				if err != nil {
					return func() error { return err }
				}
				if mode == "pebble" {
					rt := pebbleSession(b, svc, sess.SessionID)
					return func() (err error) {
						rt, err = pebbleRefresh(b.Context(), svc, &locks, rt)
						return err
					}
				}
				rt := sess.RefreshToken
				return func() error {
					resp, err := svc.refresh(b.Context(), rt, clientAuth{}, "")
					if err == nil {
						rt = resp.RefreshToken
					}
					return err
				}
			})
		})
	}
}

// pebbleSession copies session sid into Pebble as the previous version kept
// it, with a fresh refresh token, which it returns.
func pebbleSession(b *testing.B, svc *Service, sid string) string {
	cur, err := svc.sessions.get(b.Context(), sid)
	if err != nil || cur.sess == nil {
		b.Fatalf("read session %s: %v", sid, err)
	}
	rt := "hrt_" + randomSecret(32)
	sess := cur.sess
	sess.Refresh = hashToken(rt)
	_, err = svc.outbox.commit(b.Context(), func(c *change) error {
		if err := c.put(sessionKey(sid), sess); err != nil {
			return err
		}
		return c.put(refreshKey(sess.Refresh), &refreshRecord{SessionID: sid, Expires: sess.Expires})
	})
	if err != nil {
		b.Fatal(err)
	}
	return rt
}

// pebbleRefresh is the refresh of the version before HERALD_SESSIONS, its
// checks and writes as they were, for BenchmarkRefresh.
func pebbleRefresh(ctx context.Context, s *Service, locks *[256]sync.Mutex, token string) (string, error) {
	hash := hashToken(token)
	var rt refreshRecord
	b, ok, err := s.state.Get(refreshKey(hash))
	if err != nil || !ok || decodeJSON(b, &rt) != nil {
		return "", fmt.Errorf("unknown refresh token (%v)", err)
	}
	h := fnv.New32a()
	h.Write([]byte(rt.SessionID))
	m := &locks[h.Sum32()%uint32(len(locks))]
	m.Lock()
	defer m.Unlock()
	now := s.now()
	var next string
	_, err = s.outbox.commit(ctx, func(c *change) error {
		var sess sessionRecord
		var cur refreshRecord
		if ok, err := c.get(sessionKey(rt.SessionID), &sess); err != nil || !ok {
			return fmt.Errorf("unknown session (%v)", err)
		}
		if ok, err := c.get(refreshKey(hash), &cur); err != nil || !ok || cur.Used || sess.Ended {
			return fmt.Errorf("refresh refused (%v)", err)
		}
		if cut, err := s.cutoffFor(ctx, &sess); err != nil || !cut.IsZero() || !sess.live(now, s.cfg.SessionIdle) {
			return fmt.Errorf("session over (%v)", err)
		}
		ttl := min(s.cfg.AccessTTL, sess.Expires.Sub(now))
		_, _, issued, err := s.mint(now, grant{subject: sess.Subject, tenant: sess.Tenant, clientID: sess.ClientID,
			sessionID: sess.ID, scope: sess.Scope, ttl: ttl, jkt: sess.JKT, audience: sess.Audience}, "client:"+sess.ClientID)
		if err != nil {
			return err
		}
		next = "hrt_" + randomSecret(32)
		nextHash := hashToken(next)
		cur.Used = true
		sess.LastUsed, sess.Refresh = now, nextHash
		if err := c.put(refreshKey(hash), &cur); err != nil {
			return err
		}
		if err := c.put(refreshKey(nextHash), &refreshRecord{SessionID: sess.ID, Expires: sess.Expires}); err != nil {
			return err
		}
		if err := c.put(sessionKey(sess.ID), &sess); err != nil {
			return err
		}
		c.emit(issued)
		return nil
	})
	return next, err
}
