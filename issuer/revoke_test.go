package issuer

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestService_WaitMillisecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		for _, tc := range []struct {
			name  string
			now   func() time.Time
			check func(t *testing.T, next time.Time, s *Service)
		}{
			{"running clock passes the millisecond", time.Now, func(t *testing.T, next time.Time, s *Service) {
				if got := s.now(); got.Before(next) {
					t.Fatalf("returned at %v, before %v", got, next)
				}
			}},
			{"slow clock is waited for", func() time.Time { return start.Add(time.Since(start) / 4) }, func(t *testing.T, next time.Time, s *Service) {
				if got := s.now(); got.Before(next) {
					t.Fatalf("returned at %v, before %v", got, next)
				}
			}},
			{"clock held still returns after one wait", func() time.Time { return start }, func(t *testing.T, _ time.Time, _ *Service) {
				if got, max := time.Since(start), time.Millisecond; got > max {
					t.Fatalf("waited %v, want at most %v", got, max)
				}
			}},
		} {
			start = time.Now()
			s := &Service{cfg: Config{Now: tc.now}}
			at := s.now()
			s.waitMillisecond(at)
			tc.check(t, at.Truncate(time.Millisecond).Add(time.Millisecond), s)
		}
	})
}
