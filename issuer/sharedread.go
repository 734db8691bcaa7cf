package issuer

import (
	"context"
	"sync"
	"time"
)

// sharedReads reads values by key for many callers at once: a caller gets
// the answer of a read of its key that began after it called, so it sees
// every write acknowledged before then, and concurrent callers of one key
// share reads instead of making one each. It holds only the keys being
// read, so it is bounded by the requests in flight. HERALD's head (for
// Service.barrier) and cut-off entries (concurrent refreshes read the same
// ones) are read through it.
type sharedReads[K comparable, V any] struct {
	read func(ctx context.Context, key K) (V, error)

	mu   sync.Mutex
	keys map[K]*keyReads[V]
}

// keyReads are the reads of one key: the one under way, and the one that
// starts when it ends.
type keyReads[V any] struct {
	running, next *sharedRead[V]
}

// sharedRead is one read of a key.
type sharedRead[V any] struct {
	done    chan struct{}
	callers int // how many callers it answers
	val     V
	err     error
}

// readTimeout bounds one shared read.
const readTimeout = 5 * time.Second

// get returns the value of key as read after the call began.
func (g *sharedReads[K, V]) get(ctx context.Context, key K) (V, error) {
	g.mu.Lock()
	k := g.keys[key]
	if k == nil {
		if g.keys == nil {
			g.keys = make(map[K]*keyReads[V])
		}
		k = &keyReads[V]{}
		g.keys[key] = k
	}
	r := k.next
	if r == nil {
		// This caller starts the next read, once the one under way (which
		// may have begun before the call) has ended. It reads for every
		// caller that joins, whatever becomes of its own context.
		r = &sharedRead[V]{done: make(chan struct{}), callers: 1}
		k.next = r
		prev := k.running
		g.mu.Unlock()
		if prev != nil {
			<-prev.done
		}
		g.mu.Lock()
		k.running, k.next = r, nil
		g.mu.Unlock()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
		r.val, r.err = g.read(rctx, key)
		cancel()
		g.mu.Lock()
		if k.next == nil {
			delete(g.keys, key) // no read waits to follow this one
		}
		g.mu.Unlock()
		close(r.done)
	} else {
		r.callers++
		g.mu.Unlock()
	}
	select {
	case <-r.done:
		return r.val, r.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
