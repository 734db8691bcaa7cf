package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Snapshots: an issuer publishes the active denylist, as its own follower
// holds it at some HERALD sequence, as signed snapshot.chunk events on
// StreamSnapshots, so that a fresh verifier applies it chunk by chunk and
// replays only the events after it instead of checking the signature of
// every revocation the stream holds.
const (
	// StreamSnapshots holds the latest denylist snapshot, one chunk per
	// subject herald.snapshot.<index>.
	StreamSnapshots = "HERALD_SNAPSHOTS"
	// SubjectSnapshotPrefix prefixes snapshot chunk subjects:
	// herald.snapshot.<index>.
	SubjectSnapshotPrefix = "herald.snapshot."
	// TypeSnapshotChunk is one chunk of a denylist snapshot.
	TypeSnapshotChunk Type = "snapshot.chunk"
)

// MaxSnapshotChunks bounds how many chunks one snapshot has: with at
// least a few hundred entries each, far more than a denylist holds.
const MaxSnapshotChunks = 100_000

// Snapshot is the body of a TypeSnapshotChunk event: chunk Index of Count
// of snapshot ID, which holds every denylist entry in force once the
// HERALD stream is applied up to sequence Seq.
type Snapshot struct {
	// ID names the snapshot; every chunk of one snapshot carries it.
	ID string `json:"id"`
	// Seq is the HERALD sequence the snapshot is complete up to.
	Seq uint64 `json:"seq"`
	// StreamCreated is when the HERALD stream that Seq counts in was
	// created: a recreated stream counts again from 1, and a snapshot of
	// the old one says nothing of the new one's first events.
	StreamCreated time.Time `json:"stream_created"`
	// Index is this chunk's position, from 0; Count how many there are.
	Index int `json:"index"`
	Count int `json:"count"`
	// Entries are the denylist entries of this chunk.
	Entries []SnapshotEntry `json:"entries"`
	// EventKeys are the kids of the event keys the publisher trusted: it
	// applied every event up to Seq with them and refused none. A verifier
	// that trusts a key not among them, or a snapshot without them (an
	// older publisher), replays the stream instead.
	EventKeys []string `json:"event_keys,omitempty"`
}

// MaxSnapshotEventKeys bounds the event keys a snapshot names.
const MaxSnapshotEventKeys = 64

// SnapshotEntry is one denylist entry: a revocation of Kind for Value,
// made At and in force Until, merged as a verifier merges them.
type SnapshotEntry struct {
	Kind  Kind      `json:"kind"`
	Value string    `json:"value,omitempty"`
	At    time.Time `json:"at"`
	Until time.Time `json:"until"`
	// Issuer, if set, limits the entry to the tokens of that issuer, as
	// Revocation.Issuer does.
	Issuer string `json:"iss,omitempty"`
}

// SnapshotSubject returns the subject chunk index of a snapshot is
// published on.
func SnapshotSubject(index int) string { return SubjectSnapshotPrefix + strconv.Itoa(index) }

// Validate reports whether s is a well formed chunk: an id, a sequence,
// an index within its count, and entries that are valid revocations.
func (s *Snapshot) Validate() error {
	var errs []error
	if s.ID == "" || len(s.ID) > 64 {
		errs = append(errs, errors.New("snapshot id must be 1 to 64 bytes"))
	}
	if s.Seq == 0 {
		errs = append(errs, errors.New("snapshot seq is missing"))
	}
	if s.Count < 1 || s.Count > MaxSnapshotChunks || s.Index < 0 || s.Index >= s.Count {
		errs = append(errs, fmt.Errorf("snapshot chunk %d of %d", s.Index, s.Count))
	}
	if len(s.EventKeys) > MaxSnapshotEventKeys {
		errs = append(errs, fmt.Errorf("snapshot names %d event keys, at most %d", len(s.EventKeys), MaxSnapshotEventKeys))
	}
	for i, e := range s.Entries {
		r := Revocation{Kind: e.Kind, Value: e.Value, At: e.At, Until: e.Until, Issuer: e.Issuer}
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("entries[%d]: %w", i, err))
			break
		}
	}
	return errors.Join(errs...)
}

// snapshotEntryBound is an upper bound of an encoded SnapshotEntry beside
// its value and issuer: braces, member names, the longest kind and two
// RFC 3339 times with nanoseconds and an offset.
const snapshotEntryBound = 160

// SnapshotChunks splits entries into the chunks of snapshot id (at most
// 48 bytes, such as a NewID) at HERALD
// sequence seq of the stream created at created, each encoding to less than MaxEventSize, dated now and
// signed as actor when published. A snapshot of no entries is one empty
// chunk.
func SnapshotChunks(id string, seq uint64, created time.Time, entries []SnapshotEntry, actor string, now time.Time) []*Event {
	const budget = MaxEventSize - 4<<10 // the rest of the event and its SET claims
	var chunks []*Event
	start, size := 0, 0
	flush := func(end int) {
		// The event id, also the Nats-Msg-Id, names the snapshot and the
		// chunk, so that a publish retried within the dedupe window is
		// stored once.
		chunks = append(chunks, &Event{ID: id + "." + strconv.Itoa(len(chunks)), Type: TypeSnapshotChunk, Time: now, Actor: actor,
			Snapshot: &Snapshot{ID: id, Seq: seq, StreamCreated: created, Index: len(chunks), Entries: entries[start:end]}})
		start, size = end, 0
	}
	for i, e := range entries {
		// JSON escapes a byte as at most 6 (\u00XX).
		n := snapshotEntryBound + 6*(len(e.Value)+len(e.Issuer))
		if size+n > budget {
			flush(i)
		}
		size += n
	}
	if start < len(entries) || len(chunks) == 0 {
		flush(len(entries))
	}
	for _, c := range chunks {
		c.Snapshot.Count = len(chunks)
	}
	return chunks
}

// SnapshotConfig sets the limits of StreamSnapshots.
type SnapshotConfig struct {
	// MaxAge is how long a chunk is kept: the HERALD stream's MaxAge,
	// after which every entry of a snapshot has expired. Required.
	MaxAge time.Duration
	// Replicas is the replication factor (1 or 3). Default 1.
	Replicas int
}

// EnsureSnapshots creates or updates StreamSnapshots. It keeps one
// message per subject, so the stream holds the latest chunk of each index:
// the latest snapshot, and chunks of older, larger ones until they age
// out. Like the other streams it denies message delete and purge.
func (c *Conn) EnsureSnapshots(ctx context.Context, cfg SnapshotConfig) error {
	if cfg.MaxAge <= 0 {
		return errors.New("ensure snapshots: max age is required")
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	_, err := c.createOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamSnapshots,
		Description:       "Herald denylist snapshots: a fresh verifier applies the latest, then HERALD after it",
		Subjects:          []string{SubjectSnapshotPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            cfg.MaxAge,
		MaxMsgsPerSubject: 1,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Duplicates:        min(DefaultDuplicates, cfg.MaxAge),
		DenyDelete:        true,
		DenyPurge:         true,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamSnapshots, err)
	}
	return nil
}

// StreamCreated returns when a stream was created, which tells a stream
// from one deleted and created again under the same name.
func (c *Conn) StreamCreated(ctx context.Context, stream string) (time.Time, error) {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return time.Time{}, fmt.Errorf("stream %s info: %w", stream, err)
	}
	return s.CachedInfo().Created, nil
}

// LastSnapshotChunk returns the chunk last published on StreamSnapshots,
// unchecked, and false when there is none.
func (c *Conn) LastSnapshotChunk(ctx context.Context) (Delivery, bool, error) {
	s, err := c.js.Stream(ctx, StreamSnapshots)
	if err != nil {
		return Delivery{}, false, fmt.Errorf("stream %s: %w", StreamSnapshots, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, SubjectSnapshotPrefix+">")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Delivery{}, false, nil
	}
	if err != nil {
		return Delivery{}, false, fmt.Errorf("last snapshot chunk: %w", err)
	}
	return Delivery{Seq: m.Sequence, Time: m.Time, Subject: m.Subject, Header: m.Header, Data: m.Data}, true, nil
}
