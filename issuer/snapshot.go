package issuer

import (
	"context"
	"time"

	"github.com/heraldsec/herald/bus"
)

// runSnapshots publishes a snapshot of the issuer's denylist whenever it
// has applied SnapshotEvery events since the last snapshot on the stream,
// or SnapshotInterval has passed and it applied any. A snapshot another
// replica published counts, so replicas rarely publish the same state
// twice. Failures are logged and retried at the next check: snapshots
// only make verifiers start faster. Once its follower has skipped an
// event it could not verify, the issuer publishes none: a snapshot of its
// denylist would make fresh verifiers forget that event.
func (s *Service) runSnapshots(ctx context.Context) error {
	every, interval := uint64(s.cfg.SnapshotEvery), s.cfg.SnapshotInterval
	if s.cfg.SnapshotEvery < 0 {
		return nil
	}
	tick := time.NewTicker(min(time.Second, interval))
	defer tick.Stop()
	var last uint64 // sequence of the latest snapshot
	var lastAt time.Time
	known := false
	withheld := false // logged once
	due := func(applied uint64) bool {
		return applied >= last+every || (applied > last && s.now().Sub(lastAt) >= interval)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if !s.follow.CaughtUp() {
			continue
		}
		if !known || due(s.deny.Applied()) {
			// Read what the stream holds: another replica may have
			// published since.
			seq, at, err := s.lastSnapshot(ctx)
			if err != nil {
				s.log.Warn("reading the latest snapshot", "err", err)
				continue
			}
			if !known || seq > last {
				last, lastAt, known = seq, at, true
				if at.IsZero() {
					lastAt = s.now()
				}
			}
		}
		if !due(s.deny.Applied()) {
			continue
		}
		if complete := s.follow.Complete(); complete < s.deny.Applied() {
			if !withheld {
				withheld = true
				s.log.Warn("denylist snapshot withheld", "complete", complete, "applied", s.deny.Applied(),
					"why", "this issuer skipped an event it could not verify: its denylist is not what every verifier holds")
			}
			continue
		}
		started := time.Now()
		info, err := s.follow.PublishSnapshot(ctx, s.cfg.IssuerURL)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("publishing a denylist snapshot failed; retrying later", "err", err)
			continue
		}
		last, lastAt = info.Seq, s.now()
		s.log.Info("denylist snapshot published", "snapshot", info.ID, "seq", info.Seq,
			"entries", info.Entries, "chunks", info.Chunks, "took", time.Since(started).Round(time.Millisecond))
	}
}

// lastSnapshot returns the sequence and time of the snapshot chunk last
// published, if a trusted key signed it; 0 and the zero time if none.
func (s *Service) lastSnapshot(ctx context.Context) (uint64, time.Time, error) {
	d, ok, err := s.conn.LastSnapshotChunk(ctx)
	if err != nil || !ok {
		return 0, time.Time{}, err
	}
	e, err := bus.OpenEvent(d, bus.StreamSnapshots, s.trusted.EventKey)
	if err != nil || e.Type != bus.TypeSnapshotChunk {
		return 0, time.Time{}, nil // not one of ours: publish our own
	}
	return e.Snapshot.Seq, d.Time, nil
}
