package ssf

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// Run creates HERALD_SSF and its buckets if needed, publishes the
// transmitter key, then pushes the SETs of every push stream until ctx
// ends. While the bus cannot be set up or watched (NATS down, a leader
// being elected) it tries again rather than stop the issuer; it returns
// nil once ctx ends.
func (t *Transmitter) Run(ctx context.Context) error {
	if !t.setUp(ctx) {
		return nil
	}
	close(t.ready)
	t.log.Info("transmitter started", "iss", t.cfg.Issuer, "kid", t.cfg.Signer.KeyID(), "default_subjects", t.cfg.DefaultSubjects)
	defer t.stopWorkers()
	tidy := time.NewTicker(tidyEvery)
	defer tidy.Stop()
	wait := t.cfg.RetryMin
	for ctx.Err() == nil {
		watch, err := t.streams.WatchFiltered(ctx, []string{"stream.*", "key.*"})
		if err != nil {
			t.log.Warn("watch the streams; retrying", "err", err)
			sleep(ctx, wait)
			wait = min(2*wait, 30*time.Second)
			continue
		}
		wait = t.cfg.RetryMin
		t.follow(ctx, watch, tidy.C)
		_ = watch.Stop()
	}
	return nil
}

// setUp creates HERALD_SSF and its buckets if needed and publishes the
// transmitter key, trying again while the bus cannot (NATS down or
// electing a leader) rather than stopping the issuer. It reports false
// when ctx ended first.
func (t *Transmitter) setUp(ctx context.Context) bool {
	wait := t.cfg.RetryMin
	for {
		err := t.trySetUp(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		t.log.Warn("set up the transmitter's stream and buckets; retrying", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			return false
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (t *Transmitter) trySetUp(ctx context.Context) error {
	err := t.cfg.Conn.EnsureSSF(ctx, bus.SSFConfig{Retention: t.cfg.Retention, PendingTTL: 2 * t.cfg.PollAckWait,
		Replicas: t.cfg.Replicas, MaxConsumers: t.cfg.MaxStreams})
	if err != nil {
		return err
	}
	if t.streams, err = t.js.KeyValue(ctx, bus.BucketSSFStreams); err != nil {
		return err
	}
	if t.pending, err = t.js.KeyValue(ctx, bus.BucketSSFPending); err != nil {
		return err
	}
	return t.publishKey(ctx)
}

// follow applies the changes watch brings to the transmitter's view until
// the watch or ctx ends, and tidies the bucket on every tick.
func (t *Transmitter) follow(ctx context.Context, watch jetstream.KeyWatcher, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if err := t.dropMarkers(ctx, markerAge); err != nil && ctx.Err() == nil {
				t.log.Warn("drop the markers of deleted streams", "err", err)
			}
		case e, ok := <-watch.Updates():
			if !ok {
				if ctx.Err() == nil {
					t.log.Warn("the watch of the streams ended; watching again")
				}
				return
			}
			switch {
			case e == nil:
			case strings.HasPrefix(e.Key(), "key."):
				t.applyKey(e)
			default:
				t.apply(ctx, e)
			}
		}
	}
}

// Ready is closed once Run has set up the bus and the management API
// answers.
func (t *Transmitter) Ready() <-chan struct{} { return t.ready }

// apply takes a change of the streams bucket into the transmitter's view
// and starts or stops the stream's push worker.
func (t *Transmitter) apply(ctx context.Context, e jetstream.KeyValueEntry) {
	id := strings.TrimPrefix(e.Key(), "stream.")
	var r *record
	if e.Operation() == jetstream.KeyValuePut {
		r = new(record)
		if err := json.Unmarshal(e.Value(), r); err != nil {
			t.log.Error("unreadable stream record", "stream", id, "err", err)
			r = nil
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.workers[id]
	if r == nil {
		delete(t.recs, id)
		delete(t.revs, id)
		delete(t.stats, id)
	} else if e.Revision() > t.revs[id] {
		t.recs[id], t.revs[id] = r, e.Revision()
	}
	push := r != nil && r.Stream.Delivery.Method == MethodPush
	switch {
	case push && w == nil:
		wctx, cancel := context.WithCancel(ctx)
		w = &worker{id: id, wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
		t.workers[id] = w
		go func() {
			defer close(w.done)
			t.pushLoop(wctx, w)
		}()
	case !push && w != nil:
		w.cancel()
		delete(t.workers, id)
	case w != nil:
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (t *Transmitter) stopWorkers() {
	t.mu.Lock()
	ws := make([]*worker, 0, len(t.workers))
	for id, w := range t.workers {
		w.cancel()
		ws = append(ws, w)
		delete(t.workers, id)
	}
	t.mu.Unlock()
	for _, w := range ws {
		<-w.done
	}
}

// observe takes a change this replica made to stream id (at bucket
// revision rev) into its view at once, so that its workers act on it
// before the watch brings it; an older update the watch brings later is
// not taken.
func (t *Transmitter) observe(id string, r *record, rev uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.recs[id]; !ok || rev <= t.revs[id] {
		return
	}
	t.recs[id], t.revs[id] = r, rev
	if w := t.workers[id]; w != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// record returns the stream as the last watch update showed it.
func (t *Transmitter) record(id string) *record {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.recs[id]
}

func (t *Transmitter) counters(id string) *counters {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.stats[id]
	if c == nil {
		c = new(counters)
		t.stats[id] = c
	}
	return c
}
