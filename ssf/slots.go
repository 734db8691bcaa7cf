package ssf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// A receiver's streams are bounded by slots: bucket keys
// slot.<receiver hash>.<n>, n below MaxStreamsPerReceiver, each created
// (atomically, whichever replica asks) for one stream and holding its
// id. Counting the streams before creating one would let creates that
// race, at one replica or several, all pass the count.

// orphanSlotAge is how old a slot whose stream does not exist must be
// before another create takes it: a create holds its slot a moment
// before its stream's record is written, and a replica that died in
// between leaves it behind.
const orphanSlotAge = time.Minute

func slotKey(receiver Receiver, n int) string {
	sum := sha256.Sum256([]byte(receiver))
	return "slot." + hex.EncodeToString(sum[:12]) + "." + strconv.Itoa(n)
}

var errTooManyStreams = func(c *Config) *Error {
	return &Error{Status: http.StatusConflict, Code: "too_many_streams",
		Description: fmt.Sprintf("at most %d streams per receiver and %d in all", c.MaxStreamsPerReceiver, c.MaxStreams)}
}

// claimSlot takes a free slot of receiver for stream id: a 409 *Error
// when every one holds a stream.
func (t *Transmitter) claimSlot(ctx context.Context, receiver Receiver, id string) error {
	for n := range t.cfg.MaxStreamsPerReceiver {
		_, err := t.streams.Create(ctx, slotKey(receiver, n), []byte(id))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("claim stream slot: %w", err)
		}
	}
	// Every slot is held: take one whose stream is gone.
	for n := range t.cfg.MaxStreamsPerReceiver {
		e, err := t.streams.Get(ctx, slotKey(receiver, n))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := t.streams.Create(ctx, slotKey(receiver, n), []byte(id)); err == nil {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read stream slot: %w", err)
		}
		if t.cfg.Now().Sub(e.Created()) < orphanSlotAge {
			continue
		}
		_, err = t.streams.Get(ctx, streamKey(string(e.Value())))
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if _, err := t.streams.Update(ctx, slotKey(receiver, n), []byte(id), e.Revision()); err == nil {
			return nil
		}
	}
	return errTooManyStreams(&t.cfg)
}

// releaseSlot frees the slot of receiver that holds stream id.
func (t *Transmitter) releaseSlot(ctx context.Context, receiver Receiver, id string) {
	for n := range t.cfg.MaxStreamsPerReceiver {
		e, err := t.streams.Get(ctx, slotKey(receiver, n))
		if err != nil || string(e.Value()) != id {
			continue
		}
		if err := t.streams.Delete(ctx, slotKey(receiver, n), jetstream.LastRevision(e.Revision())); err != nil {
			t.log.Warn("free stream slot", "stream", id, "err", err)
		}
		return
	}
}

// markerAge is how long the marker of a deleted stream or slot stays in
// the streams bucket before the transmitter drops it: long enough for
// every replica's watch to have seen it. Without this, a receiver
// creating and deleting streams in a loop would grow the bucket for
// ever.
const markerAge = 30 * time.Minute

// tidyEvery is how often Run drops old markers.
const tidyEvery = 10 * time.Minute

// dropMarkers removes the streams bucket's deletion markers older than
// olderThan (all of them when negative). Each key is purged only up to
// its marker: a value written after it (a slot taken again) stays.
func (t *Transmitter) dropMarkers(ctx context.Context, olderThan time.Duration) error {
	w, err := t.streams.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return fmt.Errorf("list deleted streams: %w", err)
	}
	var markers []jetstream.KeyValueEntry
	for e := range w.Updates() {
		if e == nil {
			break
		}
		if op := e.Operation(); (op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge) &&
			(olderThan < 0 || t.cfg.Now().Sub(e.Created()) >= olderThan) {
			markers = append(markers, e)
		}
	}
	_ = w.Stop()
	if len(markers) == 0 {
		return nil
	}
	s, err := t.js.Stream(ctx, "KV_"+bus.BucketSSFStreams)
	if err != nil {
		return fmt.Errorf("drop deleted streams: %w", err)
	}
	for _, e := range markers {
		err := s.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bus.BucketSSFStreams+"."+e.Key()),
			jetstream.WithPurgeSequence(e.Revision()+1))
		if err != nil {
			return fmt.Errorf("drop deleted stream %s: %w", e.Key(), err)
		}
	}
	return nil
}
