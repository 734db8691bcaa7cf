package issuer

import (
	"context"
	"fmt"
	"sync"
	"time"

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
	last, err := s.head.last(ctx)
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

// headReader reads the last sequence of a stream for many callers at once:
// a caller gets the answer of a read that began after it called, so it
// sees every message acknowledged before then, and concurrent callers
// share reads instead of making one each.
type headReader struct {
	read func(ctx context.Context) (uint64, error)

	mu      sync.Mutex
	running *headRead // the read under way, if any
	next    *headRead // the read that starts when running ends
}

// headRead is one read of a stream's last sequence.
type headRead struct {
	done chan struct{}
	seq  uint64
	err  error
}

// headTimeout bounds one read of the stream's head.
const headTimeout = 5 * time.Second

// newHeadReader returns a headReader of conn's stream.
func newHeadReader(conn *bus.Conn, stream string) *headReader {
	return &headReader{read: func(ctx context.Context) (uint64, error) {
		_, last, err := conn.StreamHead(ctx, stream)
		return last, err
	}}
}

// last returns the stream's last sequence as read after the call began.
func (h *headReader) last(ctx context.Context) (uint64, error) {
	h.mu.Lock()
	r := h.next
	if r == nil {
		// This caller starts the next read, once the one under way (which
		// may have begun before the call) has ended.
		r = &headRead{done: make(chan struct{})}
		h.next = r
		prev := h.running
		h.mu.Unlock()
		if prev != nil {
			<-prev.done
		}
		h.mu.Lock()
		h.running, h.next = r, nil
		h.mu.Unlock()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), headTimeout)
		r.seq, r.err = h.read(rctx)
		cancel()
		close(r.done)
	} else {
		h.mu.Unlock()
	}
	select {
	case <-r.done:
		return r.seq, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
