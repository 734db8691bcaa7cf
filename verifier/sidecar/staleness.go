package sidecar

import (
	"context"
	"time"
)

// probeEvery returns how often the sidecar asks JetStream for the stream
// head: often enough to notice staleness within a quarter of MaxStaleness,
// at most every two seconds (the head also gives the lag heartbeats report).
func (s *Sidecar) probeEvery() time.Duration {
	return min(max(s.cfg.MaxStaleness/4, 10*time.Millisecond), 2*time.Second)
}

// watchBus tracks how long the sidecar has been cut off from the bus. A
// delivery or an answer to a stream info request counts as contact. Past
// MaxStaleness the sidecar is stale: not ready, and with on-stale deny it
// gives no verdicts. When contact returns after staleness, the sidecar
// catches up with the stream head before it is ready again: revocations
// published meanwhile are applied before the next verdict (on-stale deny).
func (s *Sidecar) watchBus(ctx context.Context) error {
	every := s.probeEvery()
	t := time.NewTicker(every)
	defer t.Stop()
	wasStale := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if s.conn.Connected() {
			pctx, cancel := context.WithTimeout(ctx, max(every, time.Second))
			err := s.follower.Probe(pctx, wasStale)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Debug("bus probe failed", "err", err)
			}
		}
		stale := s.stale()
		switch {
		case stale && !wasStale:
			args := []any{"last_contact", s.follower.LastContact(), "max_staleness", s.cfg.MaxStaleness, "on_stale", s.cfg.OnStale}
			if s.cfg.OnStale == StaleDeny {
				s.log.Error("cut off from the bus: verifier is stale and refuses to give verdicts until it has caught up", args...)
			} else {
				s.log.Error("cut off from the bus: verifier is stale and answers from its last state", args...)
			}
		case !stale && wasStale:
			s.log.Info("bus contact restored", "applied_seq", s.db.Applied())
		}
		wasStale = stale
	}
}
