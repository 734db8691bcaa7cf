package issuer

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// sharedGets reads bucket entries for many callers at once, as headReader
// reads a stream's head: a caller gets the answer of a read of its key
// that began after it called, so it sees every write acknowledged before
// then, and concurrent callers of one key share reads instead of making
// one each. Concurrent refreshes read the same cut-off entries (all, and
// their client's): they share those reads. It holds only the keys being
// read, so it is bounded by the requests in flight.
type sharedGets struct {
	get func(ctx context.Context, key string) (jetstream.KeyValueEntry, error)

	mu   sync.Mutex
	keys map[string]*keyReads
}

// keyReads are the reads of one key: the one under way, and the one that
// starts when it ends.
type keyReads struct {
	running, next *entryRead
}

// entryRead is one read of an entry.
type entryRead struct {
	done    chan struct{}
	callers int // how many callers it answers
	entry   jetstream.KeyValueEntry
	err     error
}

// getTimeout bounds one shared read.
const getTimeout = 5 * time.Second

// Get returns the entry of key as read after the call began.
func (g *sharedGets) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	g.mu.Lock()
	k := g.keys[key]
	if k == nil {
		if g.keys == nil {
			g.keys = make(map[string]*keyReads)
		}
		k = &keyReads{}
		g.keys[key] = k
	}
	r := k.next
	if r == nil {
		// This caller starts the next read, once the one under way (which
		// may have begun before the call) has ended.
		r = &entryRead{done: make(chan struct{}), callers: 1}
		k.next = r
		prev := k.running
		g.mu.Unlock()
		if prev != nil {
			<-prev.done
		}
		g.mu.Lock()
		k.running, k.next = r, nil
		g.mu.Unlock()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), getTimeout)
		r.entry, r.err = g.get(rctx, key)
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
		return r.entry, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
