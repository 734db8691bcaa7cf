package verifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// errNoSnapshot reports that StreamSnapshots holds no snapshot a fresh
// denylist can start from; errSnapshotsEmpty, that it holds nothing at all.
var (
	errNoSnapshot     = errors.New("no usable snapshot")
	errSnapshotsEmpty = errors.New("the snapshot stream is empty")
)

// parseDenyKey returns the kind, issuer (empty for every issuer) and
// value of a denylist key made by denyKeyFor.
func parseDenyKey(key string) (k bus.Kind, iss, value string, ok bool) {
	if len(key) < 2 {
		return 0, "", "", false
	}
	k = bus.Kind(key[0] - '0')
	if !k.Valid() {
		return 0, "", "", false
	}
	switch key[1] {
	case ':':
		return k, "", key[2:], true
	case '@':
		iss, value, found := strings.Cut(key[2:], "\x00")
		if !found || bus.CheckIssuer(iss) != nil {
			return 0, "", "", false
		}
		return k, iss, value, true
	}
	return 0, "", "", false
}

// SnapshotEntries turns the entries of a denylist this package fills into
// the entries of a snapshot: applied by a Follower, they give back
// exactly these entries (scope markers are written again with the
// entries they go with). A key this package did not make is an error.
func SnapshotEntries(entries []store.Entry) ([]bus.SnapshotEntry, error) {
	out := make([]bus.SnapshotEntry, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Key, scopeMarker("")) {
			continue
		}
		k, iss, v, ok := parseDenyKey(e.Key)
		if !ok {
			return nil, fmt.Errorf("snapshot entries: %q is not a denylist key", e.Key)
		}
		out = append(out, bus.SnapshotEntry{Kind: k, Value: v, At: e.At.UTC(), Until: e.Until.UTC(), Issuer: iss})
	}
	return out, nil
}

// snapshot is a complete snapshot whose chunks all verified.
type snapshot struct {
	id      string
	seq     uint64
	entries []bus.SnapshotEntry
}

// readSnapshot reads StreamSnapshots and returns its latest complete
// snapshot, every chunk of it signed by a key that keys trusts, that a
// denylist may start from: one of the HERALD stream created at created
// whose sequence lies between first - 1 and last of it, so that the events
// after it are all there.
// Chunks that fail their signature check are left out, and so is every
// snapshot they would belong to.
//
// The snapshot must also name the event keys its publisher trusted, and
// they must include every key in trusted, the kids of the keys this
// verifier trusts: otherwise its publisher may have skipped events this
// verifier would apply.
func readSnapshot(ctx context.Context, conn *bus.Conn, keys bus.EventKeyFunc, trusted []string, created time.Time, first, last uint64) (*snapshot, error) {
	var msgs []bus.Delivery
	// Chunks are up to a MiB each: ask for a few at a time, or the server
	// may cut off a reader that falls behind.
	err := conn.Read(ctx, bus.StreamSnapshots, bus.ReadOptions{MaxBytes: 8 * bus.MaxEventSize}, func(d bus.Delivery) bool {
		msgs = append(msgs, d)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoSnapshot, err)
	}
	type parts struct {
		seq     uint64
		created time.Time
		count   int
		keys    []string
		chunks  []*bus.Snapshot // by index
		bad     bool
	}
	byID := map[string]*parts{}
	var refused []error
	for i, o := range openEvents(msgs, bus.StreamSnapshots, keys, 0) {
		if o.err == nil && o.e.Type != bus.TypeSnapshotChunk {
			o.err = fmt.Errorf("%w: type %s on the snapshot stream", bus.ErrMalformed, o.e.Type)
		}
		if o.err != nil {
			refused = append(refused, fmt.Errorf("chunk at %d: %s: %w", msgs[i].Seq, bus.Reason(o.err), o.err))
			continue
		}
		c := o.e.Snapshot
		p := byID[c.ID]
		if p == nil {
			p = &parts{seq: c.Seq, created: c.StreamCreated, count: c.Count, keys: c.EventKeys, chunks: make([]*bus.Snapshot, c.Count)}
			byID[c.ID] = p
		}
		if c.Seq != p.seq || !c.StreamCreated.Equal(p.created) || c.Count != p.count || p.chunks[c.Index] != nil ||
			!slices.Equal(c.EventKeys, p.keys) {
			p.bad = true // chunks that disagree: signed, but not one snapshot
			continue
		}
		p.chunks[c.Index] = c
	}
	var best *snapshot
	var why []error
	for id, p := range byID {
		switch {
		case p.bad:
			why = append(why, fmt.Errorf("snapshot %s: inconsistent chunks", id))
			continue
		case slices.Contains(p.chunks, nil):
			why = append(why, fmt.Errorf("snapshot %s at %d: incomplete", id, p.seq))
			continue
		case !p.created.Equal(created):
			why = append(why, fmt.Errorf("snapshot %s: of a HERALD stream created at %s, not this one of %s", id, p.created, created))
			continue
		case p.seq > last:
			why = append(why, fmt.Errorf("snapshot %s at %d: beyond the stream head %d", id, p.seq, last))
			continue
		case first > 0 && p.seq < first-1:
			why = append(why, fmt.Errorf("snapshot %s at %d: stale, the stream starts at %d", id, p.seq, first))
			continue
		case len(p.keys) == 0:
			why = append(why, fmt.Errorf("snapshot %s at %d: names no event keys its publisher trusted (an older issuer)", id, p.seq))
			continue
		}
		if kid, ok := untrustedBy(p.keys, trusted); ok {
			why = append(why, fmt.Errorf("snapshot %s at %d: its publisher did not trust event key %s, which this verifier trusts", id, p.seq, kid))
			continue
		}
		if best == nil || p.seq > best.seq || (p.seq == best.seq && id > best.id) {
			best = &snapshot{id: id, seq: p.seq}
			for _, c := range p.chunks {
				best.entries = append(best.entries, c.Entries...)
			}
		}
	}
	if best == nil {
		if len(msgs) == 0 {
			why = append(why, errSnapshotsEmpty)
		}
		return nil, fmt.Errorf("%w: %w", errNoSnapshot, errors.Join(append(refused, why...)...))
	}
	return best, nil
}

// untrustedBy returns a kid of trusted that publisher does not hold.
func untrustedBy(publisher, trusted []string) (string, bool) {
	for _, kid := range trusted {
		if !slices.Contains(publisher, kid) {
			return kid, true
		}
	}
	return "", false
}

// restore starts an empty denylist from the latest usable snapshot: it
// applies its entries and its sequence in one batch and returns that
// sequence, from which following continues. Without a usable snapshot it
// returns 0 and the stream is replayed from its start. Only store and bus
// errors are returned.
func (f *Follower) restore(ctx context.Context, first, last uint64) (uint64, error) {
	started := time.Now()
	created, err := f.conn.StreamCreated(ctx, bus.StreamRevocations)
	if err != nil {
		return 0, err
	}
	snap, err := readSnapshot(ctx, f.conn, f.keys.EventKey, f.keys.EventKeys(), created, first, last)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		f.snapFallbacks.Add(1)
		level := slog.LevelWarn
		if errors.Is(err, errSnapshotsEmpty) || errors.Is(err, jetstream.ErrStreamNotFound) { // none yet, or an older issuer
			level = slog.LevelInfo
		}
		f.log.Log(ctx, level, "no denylist snapshot to start from; replaying the whole revocation stream", "err", err)
		return 0, nil
	}
	entries := make([]store.Entry, 0, len(snap.entries))
	var revokedKeys []string
	for _, e := range snap.entries {
		r := bus.Revocation{Kind: e.Kind, Value: e.Value, At: e.At, Until: e.Until, Issuer: e.Issuer}
		f.bound(&r, snap.seq)
		entries = entriesFor(entries, &r)
		if e.Kind == bus.KindKey && e.Issuer == "" {
			revokedKeys = append(revokedKeys, e.Value)
		}
	}
	if err := f.db.Load(snap.seq, entries); err != nil {
		return 0, fmt.Errorf("apply snapshot %s at %d: %w", snap.id, snap.seq, err)
	}
	for _, kid := range revokedKeys {
		f.keys.Remove(kid)
	}
	f.snapSeq.Store(snap.seq)
	f.notifyApplied()
	f.log.Info("denylist started from a snapshot", "snapshot", snap.id, "seq", snap.seq,
		"entries", len(entries), "took", time.Since(started).Round(time.Millisecond))
	return snap.seq, nil
}

// snapshotWindow is how many snapshot chunks are published at once: it
// bounds the encoded chunks held in memory to a few tens of MiB.
const snapshotWindow = 32

// SnapshotInfo describes a published snapshot.
type SnapshotInfo struct {
	// ID names the snapshot.
	ID string
	// Seq is the HERALD sequence it is complete up to.
	Seq uint64
	// Entries and Chunks count what it holds.
	Entries, Chunks int
}

// ErrSnapshotIncomplete reports that a denylist skipped an event of the
// stream for its signature: a snapshot of it would make the verifiers that
// start from it forget that event.
var ErrSnapshotIncomplete = errors.New("the denylist skipped an event it could not verify; no snapshot of it is published")

// PublishSnapshot publishes the entries db holds, a denylist filled by a
// Follower that refused no event, and the sequence they are the state at,
// as signed chunks on bus.StreamSnapshots, through conn, which signs them;
// the snapshot names conn's event key as the one its publisher trusted.
// An empty db (nothing applied) publishes nothing and returns a zero
// SnapshotInfo. It is safe to call while db is being applied to. A
// Follower publishes its own denylist with Follower.PublishSnapshot.
func PublishSnapshot(ctx context.Context, conn *bus.Conn, db *store.DB, actor string) (SnapshotInfo, error) {
	signer := conn.Signer()
	if signer == nil {
		return SnapshotInfo{}, errors.New("publish snapshot: the connection has no event key to sign with")
	}
	return publishSnapshot(ctx, conn, db, actor, []string{signer.KeyID()}, nil)
}

// PublishSnapshot publishes the Follower's denylist as PublishSnapshot
// does, naming the event keys it trusts, through its connection. It
// returns an error wrapping ErrSnapshotIncomplete, and publishes nothing,
// once the denylist has skipped an event for its signature (Complete):
// a snapshot covers only what the Follower applied without refusals.
func (f *Follower) PublishSnapshot(ctx context.Context, actor string) (SnapshotInfo, error) {
	return publishSnapshot(ctx, f.conn, f.db, actor, f.keys.EventKeys(), f.Complete)
}

// publishSnapshot publishes db's entries, naming kids as the event keys
// trusted; complete, if not nil, returns the last sequence db holds every
// event up to.
func publishSnapshot(ctx context.Context, conn *bus.Conn, db *store.DB, actor string, kids []string,
	complete func() uint64) (SnapshotInfo, error) {
	if len(kids) == 0 || len(kids) > bus.MaxSnapshotEventKeys {
		return SnapshotInfo{}, fmt.Errorf("publish snapshot: %d trusted event keys, want 1 to %d", len(kids), bus.MaxSnapshotEventKeys)
	}
	seq, entries, err := db.Entries()
	if err != nil || seq == 0 {
		return SnapshotInfo{}, err
	}
	if complete != nil {
		if c := complete(); seq > c {
			return SnapshotInfo{}, fmt.Errorf("publish snapshot at %d: complete only up to %d: %w", seq, c, ErrSnapshotIncomplete)
		}
	}
	// In key order, a verifier writes them to Pebble without sorting.
	slices.SortFunc(entries, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) })
	se, err := SnapshotEntries(entries)
	if err != nil {
		return SnapshotInfo{}, err
	}
	created, err := conn.StreamCreated(ctx, bus.StreamRevocations)
	if err != nil {
		return SnapshotInfo{}, err
	}
	info := SnapshotInfo{ID: bus.NewID(), Seq: seq, Entries: len(se)}
	chunks := bus.SnapshotChunks(info.ID, seq, created, se, actor, time.Now().UTC())
	kids = slices.Sorted(slices.Values(kids))
	for _, c := range chunks {
		c.Snapshot.EventKeys = kids
	}
	info.Chunks = len(chunks)
	for i := 0; i < len(chunks); i += snapshotWindow {
		if _, err := conn.PublishAll(ctx, chunks[i:min(i+snapshotWindow, len(chunks))]...); err != nil {
			return SnapshotInfo{}, fmt.Errorf("publish snapshot %s at %d: %w", info.ID, seq, err)
		}
	}
	return info, nil
}
