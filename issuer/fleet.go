package issuer

import (
	"context"
	"time"

	"github.com/heraldsec/herald/bus"
)

// skewEvery is how often the issuer measures its clock against the NATS
// server's and the verifiers' against its own.
const skewEvery = 10 * time.Second

// skewOf returns a verifier's clock minus the issuer's, from their offsets
// against the NATS server.
func skewOf(hb *bus.Heartbeat, issuerOffset time.Duration) (time.Duration, bool) {
	if hb.ClockOffsetMS == nil {
		return 0, false
	}
	return time.Duration(*hb.ClockOffsetMS)*time.Millisecond - issuerOffset, true
}

// watchSkew measures, every skewEvery until ctx ends, the issuer's clock
// against the NATS server's and the live verifiers' against the issuer's,
// keeps them and the number of live verifiers for the metrics, and warns while any is beyond
// bus.SkewWarning. Failures are retried at the next check.
func (s *Service) watchSkew(ctx context.Context) error {
	t := time.NewTicker(skewEvery)
	defer t.Stop()
	for {
		s.measureSkew(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// measureSkew is one check of watchSkew.
func (s *Service) measureSkew(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, bus.ListTimeout)
	defer cancel()
	off, err := s.conn.ClockOffset(ctx, s.now)
	if err != nil {
		return
	}
	s.clockOffset.Store(int64(off))
	s.clockKnown.Store(true)
	if off.Abs() > bus.SkewWarning {
		s.log.Warn("CLOCK SKEW: this issuer's clock differs from the NATS server's; check NTP",
			"offset", off.Round(time.Millisecond), "threshold", bus.SkewWarning)
	}
	list, err := s.conn.ListFleet(ctx)
	if err != nil {
		return
	}
	var worst time.Duration
	var worstID string
	skewed, live := 0, 0
	now := time.Now() // heartbeats are dated by the verifiers' clocks: aged on the wall clock
	for i := range list {
		hb := &list[i]
		if hb.Live(now) {
			live++
		}
		skew, ok := skewOf(hb, off)
		if !ok || !hb.Live(now) {
			continue
		}
		if skew.Abs() > bus.SkewWarning {
			skewed++
		}
		if skew.Abs() >= worst.Abs() {
			worst, worstID = skew, hb.ID
		}
	}
	s.maxSkew.Store(int64(worst.Abs()))
	s.fleetLive.Store(int64(live))
	s.fleetKnown.Store(true)
	if skewed > 0 {
		s.log.Warn("CLOCK SKEW: verifiers' clocks differ from this issuer's; revocations are dated by the issuer's clock, check NTP",
			"verifiers", skewed, "worst", worstID, "skew", worst.Round(time.Millisecond), "threshold", bus.SkewWarning)
	}
}
