package issuer

import (
	"context"
	"fmt"

	"github.com/heraldsec/herald/bus"
)

// barrier returns once this replica's revocation follower has applied
// every revocation HERALD held when barrier was called, so that a refresh
// that comes after another replica answered a revocation is refused by
// this replica's denylist, whether or not that replica has recorded the
// revocation in HERALD_SESSIONS yet. It waits s.catchUpWait at most, and
// returns errCatchingUp then.
func (s *Service) barrier(ctx context.Context) error {
	wait := s.catchUpWait
	if wait == 0 {
		wait = catchUpWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	last, err := s.head.get(ctx, bus.StreamRevocations)
	if err != nil {
		if ctx.Err() != nil {
			return errCatchingUp
		}
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	if err := s.follow.WaitApplied(ctx, last); err != nil {
		return errCatchingUp
	}
	return nil
}

// newHeadReader returns the reads of the last sequence of conn's streams,
// by stream name, shared between concurrent callers.
func newHeadReader(conn *bus.Conn) *sharedReads[string, uint64] {
	return &sharedReads[string, uint64]{read: func(ctx context.Context, stream string) (uint64, error) {
		_, last, err := conn.StreamHead(ctx, stream)
		return last, err
	}}
}
