package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

	// afterCommit and afterPublish, when set by tests, run after the
	// commit and after the acknowledgement; an error stands for a crash at
	// that point.
	afterCommit, afterPublish func() error
}

func newOutbox(db *store.DB, conn *bus.Conn, log *slog.Logger) *outbox {
	o := &outbox{db: db, conn: conn, log: log, started: time.Now()}
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
	kept   bool
	gate   func() error
}

// waitFor makes the commit, once its state is written, wait for gate
// before publishing: if gate fails, the change is undone, nothing is
// published, and commit returns gate's error. Work that must succeed
// before the events go out (a claim on a shared record) thus overlaps
// the synced write instead of preceding it.
func (c *change) waitFor(gate func() error) { c.gate = gate }

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

// errNotPublished wraps a publish failure after the change was committed
// and kept: its events stay in the outbox and will be published later.
var errNotPublished = errors.New("issuer: change committed; its events will be published when the bus is back")

// commit runs fn and commits its writes with its events in the outbox, then
// publishes the events and waits for their acknowledgements. It returns the
// events' stream sequences.
//
// When publishing fails, the change is undone (state restored, outbox
// entries dropped) and commit returns errUnavailable: the request changed
// nothing. A change marked with keep (revocations: better late than never)
// stays instead, its events are published by Run, and commit returns an
// error wrapping errNotPublished.
func (o *outbox) commit(ctx context.Context, fn func(c *change) error) ([]uint64, error) {
	c := &change{undo: make(map[string][]byte)}
	var keys []string
	err := o.db.Update(func(tx *store.Tx) error {
		c.tx = tx
		if err := fn(c); err != nil {
			return err
		}
		var err error
		keys, _, err = o.put(tx, c.events)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(c.events) == 0 {
		return nil, nil
	}
	if o.afterCommit != nil {
		if err := o.afterCommit(); err != nil {
			return nil, err
		}
	}
	if c.gate != nil {
		if gerr := c.gate(); gerr != nil {
			o.undo(c, keys)
			return nil, gerr
		}
	}
	seqs, perr := o.publish(ctx, keys, c.events)
	if perr == nil {
		return seqs, nil
	}
	if errors.Is(perr, errCrashed) {
		return nil, perr
	}
	if c.kept {
		return nil, fmt.Errorf("%w: %w", errNotPublished, perr)
	}
	o.undo(c, keys)
	return nil, errUnavailable
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
	seqs, err := o.publish(ctx, st.keys, st.events)
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
// acknowledgements and removes them. On failure they stay.
func (o *outbox) publish(ctx context.Context, keys []string, events []*bus.Event) ([]uint64, error) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
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
	for i, it := range items {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		_, err := o.conn.Publish(pctx, it.ev)
		cancel()
		if err != nil {
			return i, err
		}
		o.remove([]string{it.key})
	}
	return len(items), nil
}

// pending returns how many events wait in the outbox.
func (o *outbox) pending() int {
	n := 0
	_ = o.db.Scan(outboxPrefix, func(string, []byte) error { n++; return nil })
	return n
}
