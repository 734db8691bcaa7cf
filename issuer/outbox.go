package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

const (
	outboxPrefix = "outbox/"
	// outboxGrace is how old an outbox entry of this process must be before
	// the drainer takes it: younger ones belong to a request still publishing.
	outboxGrace = 10 * time.Second
	// drainEvery is how often the drainer looks at the outbox.
	drainEvery = time.Second
	// publishTimeout bounds how long a request waits for its acknowledgements.
	publishTimeout = 5 * time.Second
	// maxFollowing bounds the work that follows answers in flight at once.
	maxFollowing = 256
	// drainChunk is how many events the drainer publishes at once.
	drainChunk = 128
)

// outbox makes a state change and its events one unit: both are written in
// one Pebble batch, then the events are published to JetStream (with
// Nats-Msg-Id, so a republish is stored once) and removed from the outbox.
// Entries left behind by a crash or a bus outage are published by Run.
// Its times are on the wall clock, not Config.Now: they measure how long a
// request has been publishing, and order entries across restarts.
type outbox struct {
	db      *store.DB
	conn    *bus.Conn
	log     *slog.Logger
	started time.Time
	next    atomic.Uint64

	drainMu sync.Mutex // one drain at a time

	// Work that follows an answer (the publish of audit events, the
	// sharing of cut-offs) runs on goroutines of bg, at most maxFollowing
	// at a time; beyond that, the caller does it before it answers.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgStop   context.CancelFunc
	slots    chan struct{}
	followMu sync.Mutex
	// gen is the generation the next run joins; open holds every
	// generation with runs in flight, gen included. settle seals gen, so
	// that it waits only for the runs started before it was called.
	gen    *followGen
	open   []*followGen
	closed bool

	// afterCommit and afterPublish, when set by tests, run after the
	// commit and after the acknowledgement; an error stands for a crash at
	// that point. skipFollow, set by tests, drops the work that follows
	// answers, as a crash right after the answer would: it is left to Run.
	afterCommit, afterPublish func() error
	skipFollow                bool
}

func newOutbox(db *store.DB, conn *bus.Conn, log *slog.Logger) *outbox {
	o := &outbox{db: db, conn: conn, log: log, started: time.Now(), slots: make(chan struct{}, maxFollowing)}
	o.bgCtx, o.bgStop = context.WithCancel(context.Background())
	o.next.Store(uint64(o.started.UnixNano())) // ordered across restarts
	return o
}

type outboxEntry struct {
	Created time.Time       `json:"created"`
	Event   json.RawMessage `json:"event"`
}

// change is the state change being committed: reads and writes of state
// keys, and the events that report it.
type change struct {
	tx     *store.Tx
	undo   map[string][]byte // value before the change; nil if absent
	order  []string
	events []*bus.Event
	after  []*bus.Event
	kept   bool
	gate   func() error
	along  func() error
}

// waitFor makes the commit, once its state is written, wait for gate
// before publishing: if gate fails, the change is undone, nothing is
// published, and commit returns gate's error. Work that must succeed
// before the events go out (a claim on a shared record) thus overlaps
// the synced write instead of preceding it.
func (c *change) waitFor(gate func() error) { c.gate = gate }

// alongside makes the commit of a kept change, once its state is written
// (not yet synced), run fn while it publishes, and answer once both are
// done. An error of fn is returned as the commit's, wrapping
// errNotPublished: the change's state records what fn does, for Run to
// do again.
func (c *change) alongside(fn func() error) { c.along = fn }

// keep marks the change as one to keep even if its events cannot be
// published now: revocations are better late than never.
func (c *change) keep() { c.kept = true }

// get decodes the JSON value of key into v, reporting whether it exists.
func (c *change) get(key string, v any) (bool, error) {
	b, ok, err := c.tx.Get(key)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func (c *change) remember(key string) error {
	if _, seen := c.undo[key]; seen {
		return nil
	}
	old, _, err := c.tx.Get(key)
	if err != nil {
		return err
	}
	c.undo[key] = old
	c.order = append(c.order, key)
	return nil
}

// put sets key to the JSON encoding of v.
func (c *change) put(key string, v any) error {
	if err := c.remember(key); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	c.tx.Set(key, b)
	return nil
}

// del deletes key.
func (c *change) del(key string) error {
	if err := c.remember(key); err != nil {
		return err
	}
	c.tx.Delete(key)
	return nil
}

// emit adds an event to publish with the change.
func (c *change) emit(e *bus.Event) { c.events = append(c.events, e) }

// emitAfter adds an event that reports the change but need not be
// acknowledged before the caller is answered, such as its audit record. It
// is written to the outbox, synced, with the change and published after
// it; until acknowledged it stays in the outbox, for Run.
func (c *change) emitAfter(e *bus.Event) { c.after = append(c.after, e) }

// errNotPublished wraps a publish failure after the change was committed
// and kept: its events stay in the outbox and will be published later.
var errNotPublished = errors.New("issuer: change committed; its events will be published when the bus is back")

// commit runs fn and commits its writes with its events in the outbox, then
// publishes the events and waits for their acknowledgements. It returns the
// sequences of the events emitted with emit; those emitted with emitAfter
// are published without waiting for them.
//
// When publishing fails, the change is undone (state restored, outbox
// entries dropped) and commit returns errUnavailable: the request changed
// nothing. A change marked with keep (revocations: better late than never)
// stays instead, its events are published by Run, and commit returns an
// error wrapping errNotPublished. A kept change is published while its
// write is being synced, so the answer waits for the slower of the two
// rather than for both in turn; it comes once both are done.
func (o *outbox) commit(ctx context.Context, fn func(c *change) error) ([]uint64, error) {
	c := &change{undo: make(map[string][]byte)}
	var keys, afterKeys []string
	durable, err := o.db.UpdateThenSync(func(tx *store.Tx) error {
		c.tx = tx
		if err := fn(c); err != nil {
			return err
		}
		var err error
		if keys, _, err = o.put(tx, c.events); err != nil {
			return err
		}
		afterKeys, _, err = o.put(tx, c.after)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(c.events) == 0 || !c.kept {
		if err := durable(); err != nil {
			return nil, err
		}
		durable = nil
	}
	if len(c.events)+len(c.after) == 0 {
		return nil, nil
	}
	synced := make(chan error, 1)
	if durable != nil {
		// Joined on every path below, before commit returns.
		go func() { synced <- durable() }()
	} else {
		synced <- nil
	}
	seqs, err := o.publishChange(ctx, c, keys, afterKeys)
	if serr := <-synced; serr != nil {
		return nil, serr
	}
	return seqs, err
}

// publishChange publishes what c emitted once its write is committed:
// the events under keys, awaited, and those under afterKeys, in the
// background.
func (o *outbox) publishChange(ctx context.Context, c *change, keys, afterKeys []string) ([]uint64, error) {
	if o.afterCommit != nil {
		if err := o.afterCommit(); err != nil {
			return nil, err
		}
	}
	if c.gate != nil {
		if gerr := c.gate(); gerr != nil {
			o.undo(c, append(keys, afterKeys...))
			return nil, gerr
		}
	}
	along := make(chan error, 1)
	if c.along != nil {
		go func() { along <- c.along() }() // joined below
	} else {
		along <- nil
	}
	var seqs []uint64
	var perr error
	if len(c.events) > 0 {
		seqs, perr = o.publish(context.WithoutCancel(ctx), keys, c.events)
	}
	aerr := <-along
	if errors.Is(perr, errCrashed) {
		return nil, perr
	}
	if perr == nil || c.kept {
		// Published, or to be published by Run: what follows too.
		if len(c.after) > 0 {
			o.follow(func(ctx context.Context) { _, _ = o.publish(ctx, afterKeys, c.after) })
		}
	}
	switch {
	case perr == nil && aerr == nil:
		return seqs, nil
	case perr == nil:
		return nil, fmt.Errorf("%w: %w", errNotPublished, aerr)
	case c.kept:
		return nil, fmt.Errorf("%w: %w", errNotPublished, perr)
	}
	o.undo(c, append(keys, afterKeys...))
	return nil, errUnavailable
}

// follow runs fn, work that follows an answer, in the background; when
// maxFollowing such runs are in flight, it runs fn itself, so that the
// caller answers later rather than the work pile up. fn's context ends
// when the outbox is closed; what fn leaves undone is in the outbox, or
// among the pending shares, for Run.
func (o *outbox) follow(fn func(ctx context.Context)) {
	if o.skipFollow {
		return
	}
	select {
	case o.slots <- struct{}{}:
	default:
		fn(o.bgCtx)
		return
	}
	o.followMu.Lock()
	defer o.followMu.Unlock()
	if o.closed {
		<-o.slots
		return
	}
	if o.gen == nil {
		o.gen = &followGen{done: make(chan struct{})}
		o.open = append(o.open, o.gen)
	}
	g := o.gen
	g.runs++
	o.bg.Go(func() {
		defer func() {
			<-o.slots
			o.followMu.Lock()
			if g.runs--; g.runs == 0 {
				close(g.done)
				o.open = slices.DeleteFunc(o.open, func(x *followGen) bool { return x == g })
				if o.gen == g {
					o.gen = nil
				}
			}
			o.followMu.Unlock()
		}()
		fn(o.bgCtx)
	})
}

// followGen is a generation of runs of follow: those started between two
// calls of settle. done is closed when the last of them has ended.
type followGen struct {
	runs int
	done chan struct{}
}

// settle waits until the work following the answers given so far is done,
// or ctx ends: a read of the audit trail then sees what this replica has
// answered. Work that starts after settle was called is not waited for,
// so that settle returns under a steady load too.
func (o *outbox) settle(ctx context.Context) error {
	o.followMu.Lock()
	waits := slices.Clone(o.open)
	o.gen = nil // later runs start a generation of their own
	o.followMu.Unlock()
	for _, g := range waits {
		select {
		case <-g.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// close stops the work following answers and waits for it to end. What
// it did not finish is in the outbox, for the next start.
func (o *outbox) close() {
	o.followMu.Lock()
	o.closed = true
	o.followMu.Unlock()
	o.bgStop()
	o.bg.Wait()
}

// undo reverts the state c changed and drops its outbox entries keys.
func (o *outbox) undo(c *change, keys []string) {
	err := o.db.Update(func(tx *store.Tx) error {
		for _, k := range c.order {
			if old := c.undo[k]; old != nil {
				tx.Set(k, old)
			} else {
				tx.Delete(k)
			}
		}
		for _, k := range keys {
			tx.Delete(k)
		}
		return nil
	})
	if err != nil {
		o.log.Error("undo change after failed publish", "err", err)
	}
}

// put writes events into the outbox within tx and returns their keys and
// entries.
func (o *outbox) put(tx *store.Tx, events []*bus.Event) ([]string, [][]byte, error) {
	now := time.Now()
	keys := make([]string, 0, len(events))
	entries := make([][]byte, 0, len(events))
	for _, e := range events {
		data, err := bus.Encode(e)
		if err != nil {
			return nil, nil, err
		}
		entry, err := json.Marshal(outboxEntry{Created: now, Event: data})
		if err != nil {
			return nil, nil, err
		}
		k := fmt.Sprintf("%s%016x", outboxPrefix, o.next.Add(1))
		tx.Set(k, entry)
		keys, entries = append(keys, k), append(entries, entry)
	}
	return keys, entries, nil
}

// staged are events written into the outbox before the change they
// report is made somewhere else (the shared session bucket). Then either
// send publishes them or, if the change was not made, drop removes them.
type staged struct {
	events  []*bus.Event
	keys    []string
	entries [][]byte
	durable bool // written synced
}

// stage writes events into the outbox. Durable staging waits for the disk:
// for revocations, which must go out even if this process dies before the
// change is made. Otherwise the write survives a crash of the process, not
// of the machine, and send makes it durable if it cannot publish the events
// before the caller answers.
func (o *outbox) stage(events []*bus.Event, durable bool) (*staged, error) {
	st := &staged{events: events, durable: durable}
	if len(events) == 0 {
		return st, nil
	}
	update := o.db.UpdateNoSync
	if durable {
		update = o.db.Update
	}
	err := update(func(tx *store.Tx) error {
		var err error
		st.keys, st.entries, err = o.put(tx, events)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("stage events: %w", err)
	}
	return st, nil
}

// send publishes staged events, once the change they report is made, and
// returns their sequences. When publishing fails they stay in the outbox,
// synced, for Run, and send returns an error wrapping errNotPublished.
func (o *outbox) send(ctx context.Context, st *staged) ([]uint64, error) {
	if len(st.events) == 0 {
		return nil, nil
	}
	seqs, err := o.publish(context.WithoutCancel(ctx), st.keys, st.events)
	if err == nil || errors.Is(err, errCrashed) {
		return seqs, err
	}
	if !st.durable {
		derr := o.db.Update(func(tx *store.Tx) error {
			for i, k := range st.keys {
				tx.Set(k, st.entries[i])
			}
			return nil
		})
		if derr != nil {
			o.log.Error("unpublished events not synced", "events", len(st.keys), "err", derr)
		}
	}
	return nil, fmt.Errorf("%w: %w", errNotPublished, err)
}

// drop removes staged events whose change was not made. The delete is
// synced: a crash must not bring back events of something that never
// happened.
func (o *outbox) drop(st *staged) {
	if len(st.keys) == 0 {
		return
	}
	err := o.db.Update(func(tx *store.Tx) error {
		for _, k := range st.keys {
			tx.Delete(k)
		}
		return nil
	})
	if err != nil {
		o.log.Error("staged events not dropped", "events", len(st.keys), "err", err)
	}
}

// errCrashed marks the error of a test hook that stands for a crash: the
// caller returns it as it is, with nothing undone.
var errCrashed = errors.New("issuer: simulated crash")

// publish publishes events in the outbox under keys, waits for their
// acknowledgements, for publishTimeout at most, and removes them. On
// failure they stay.
func (o *outbox) publish(ctx context.Context, keys []string, events []*bus.Event) ([]uint64, error) {
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	seqs, err := o.conn.PublishAll(pctx, events...)
	if err != nil {
		o.log.Error("events not acknowledged", "events", len(events), "first_type", events[0].Type, "err", err)
		return nil, err
	}
	if o.afterPublish != nil {
		if err := o.afterPublish(); err != nil {
			return nil, fmt.Errorf("%w: %w", errCrashed, err)
		}
	}
	o.remove(keys)
	return seqs, nil
}

// remove deletes published entries from the outbox. It does not wait for
// the disk: an entry a crash brings back is published again and
// deduplicated by JetStream, so a synced write here would only slow every
// request down.
func (o *outbox) remove(keys []string) {
	err := o.db.UpdateNoSync(func(tx *store.Tx) error {
		for _, k := range keys {
			tx.Delete(k)
		}
		return nil
	})
	if err != nil {
		// They will be published again by the drainer, and deduplicated by
		// JetStream within its window.
		o.log.Warn("outbox entries not removed", "err", err)
	}
}

// Run publishes what is left in the outbox, at once and then every second,
// until ctx ends.
func (o *outbox) Run(ctx context.Context) error {
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	for {
		if n, err := o.drain(ctx); err != nil {
			o.log.Warn("outbox not drained", "err", err)
		} else if n > 0 {
			o.log.Info("outbox drained", "events", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// drain publishes the entries written before this process started or older
// than outboxGrace, in order, and removes them.
func (o *outbox) drain(ctx context.Context) (int, error) {
	o.drainMu.Lock()
	defer o.drainMu.Unlock()
	type item struct {
		key string
		ev  *bus.Event
	}
	var items []item
	cutoff := time.Now().Add(-outboxGrace)
	err := o.db.Scan(outboxPrefix, func(key string, val []byte) error {
		var e outboxEntry
		if err := json.Unmarshal(val, &e); err != nil {
			return fmt.Errorf("outbox entry %s: %w", key, err)
		}
		if e.Created.After(o.started) && e.Created.After(cutoff) {
			return nil
		}
		ev, err := bus.Decode(e.Event)
		if err != nil {
			return fmt.Errorf("outbox entry %s: %w", key, err)
		}
		items = append(items, item{key, ev})
		return nil
	})
	if err != nil {
		return 0, err
	}
	// In order, a chunk at a time: the bus writes a chunk's events as
	// one group (atomic batches), so a backlog drains at the bus's pace.
	for start := 0; start < len(items); start += drainChunk {
		chunk := items[start:min(start+drainChunk, len(items))]
		keys, events := make([]string, len(chunk)), make([]*bus.Event, len(chunk))
		for i, it := range chunk {
			keys[i], events[i] = it.key, it.ev
		}
		if _, err := o.publish(ctx, keys, events); err == nil {
			continue
		}
		// One at a time, so that what was published leaves the outbox
		// and is not published again after JetStream's dedupe window.
		for i := range chunk {
			if _, err := o.publish(ctx, keys[i:i+1], events[i:i+1]); err != nil {
				return start + i, err
			}
		}
	}
	return len(items), nil
}

// pending returns how many events wait in the outbox.
func (o *outbox) pending() int {
	n := 0
	_ = o.db.Scan(outboxPrefix, func(string, []byte) error { n++; return nil })
	return n
}
