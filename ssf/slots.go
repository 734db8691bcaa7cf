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
