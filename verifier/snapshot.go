package verifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// snapshotParts is what the verified chunks of one snapshot say of it.
type snapshotParts struct {
	seq     uint64
	created time.Time
	count   int
	keys    []string
	have    []bool // by index
	bad     bool   // chunks that disagree: signed, but not one snapshot
}

// snapshotScan is what scanSnapshots found on StreamSnapshots.
type snapshotScan struct {
	byID    map[string]*snapshotParts
	msgs    int
	refused []error
}

// snapshotReadAhead is how many chunks are read and checked at once, up
// to a MiB each, spread over the CPUs: the next ones are checked while
// the last ones are written.
const snapshotReadAhead = 8

// scanSnapshots reads StreamSnapshots and checks every chunk's signature,
// keeping only what each says of its snapshot. The chunks of snapshot
// load, if not empty, that agree with the chunks of it before them go to
// apply, in stream order, as they are read: nothing holds the whole
// snapshot. Chunks that fail their check are left out. An error of apply
// stops the scan and is returned as it is; others wrap errNoSnapshot.
func scanSnapshots(ctx context.Context, conn *bus.Conn, keys bus.EventKeyFunc, load string, apply func(*bus.Snapshot) error) (*snapshotScan, error) {
	sc := &snapshotScan{byID: map[string]*snapshotParts{}}
	type checked struct {
		batch  []bus.Delivery
		opened []openedEvent
	}
	// One goroutine records and applies what the reading one checked.
	work := make(chan checked)
	done := make(chan struct{})
	var applyErr error // set by the recording goroutine, read after done
	var failed atomic.Bool
	go func() {
		defer close(done)
		for w := range work {
			if applyErr == nil {
				applyErr = sc.record(w.batch, w.opened, load, apply)
				failed.Store(applyErr != nil)
			}
		}
	}()
	batch := make([]bus.Delivery, 0, snapshotReadAhead)
	flush := func() {
		if len(batch) > 0 {
			work <- checked{batch, openChunks(batch, keys)}
			batch = make([]bus.Delivery, 0, snapshotReadAhead)
		}
	}
	// Chunks are up to a MiB each: ask for a few at a time, or the server
	// may cut off a reader that falls behind.
	err := conn.Read(ctx, bus.StreamSnapshots, bus.ReadOptions{MaxBytes: 8 * bus.MaxEventSize}, func(d bus.Delivery) bool {
		sc.msgs++
		if batch = append(batch, d); len(batch) == cap(batch) {
			flush()
		}
		return !failed.Load()
	})
	if err == nil {
		flush()
	}
	close(work)
	<-done
	if applyErr != nil {
		return nil, applyErr
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoSnapshot, err)
	}
	return sc, nil
}

// openChunks checks the signatures of batch, read from StreamSnapshots,
// and decodes its chunks, each on its own goroutine.
func openChunks(batch []bus.Delivery, keys bus.EventKeyFunc) []openedEvent {
	out := make([]openedEvent, len(batch))
	var wg sync.WaitGroup
	for i := range batch {
		wg.Go(func() { out[i].e, out[i].err = bus.OpenEvent(batch[i], bus.StreamSnapshots, keys) })
	}
	wg.Wait()
	return out
}

// record notes what the checked chunks of batch say of their snapshots
// and passes those of snapshot load that agree with its chunks before
// them to apply.
func (sc *snapshotScan) record(batch []bus.Delivery, opened []openedEvent, load string, apply func(*bus.Snapshot) error) error {
	for i, o := range opened {
		if o.err == nil && o.e.Type != bus.TypeSnapshotChunk {
			o.err = fmt.Errorf("%w: type %s on the snapshot stream", bus.ErrMalformed, o.e.Type)
		}
		if o.err != nil {
			sc.refused = append(sc.refused, fmt.Errorf("chunk at %d: %s: %w", batch[i].Seq, bus.Reason(o.err), o.err))
			continue
		}
		c := o.e.Snapshot
		p := sc.byID[c.ID]
		if p == nil {
			p = &snapshotParts{seq: c.Seq, created: c.StreamCreated, count: c.Count, keys: c.EventKeys, have: make([]bool, c.Count)}
			sc.byID[c.ID] = p
		}
		if c.Seq != p.seq || !c.StreamCreated.Equal(p.created) || c.Count != p.count || p.have[c.Index] ||
			!slices.Equal(c.EventKeys, p.keys) {
			p.bad = true
			continue
		}
		p.have[c.Index] = true
		if c.ID == load && !p.bad {
			if err := apply(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// unusable reports why snapshot id, as its chunks describe it, is not one
// a denylist may start from: one of the HERALD stream created at created
// whose sequence lies between first - 1 and last of it, so that the
// events after it are all there, naming every event key in trusted among
// those its publisher trusted (otherwise its publisher may have skipped
// events this verifier would apply). Completeness is not checked.
func (p *snapshotParts) unusable(id string, trusted []string, created time.Time, first, last uint64) error {
	switch {
	case p.bad:
		return fmt.Errorf("snapshot %s: inconsistent chunks", id)
	case !p.created.Equal(created):
		return fmt.Errorf("snapshot %s: of a HERALD stream created at %s, not this one of %s", id, p.created, created)
	case p.seq > last:
		return fmt.Errorf("snapshot %s at %d: beyond the stream head %d", id, p.seq, last)
	case first > 0 && p.seq < first-1:
		return fmt.Errorf("snapshot %s at %d: stale, the stream starts at %d", id, p.seq, first)
	case len(p.keys) == 0:
		return fmt.Errorf("snapshot %s at %d: names no event keys its publisher trusted (an older issuer)", id, p.seq)
	}
	if kid, ok := untrustedBy(p.keys, trusted); ok {
		return fmt.Errorf("snapshot %s at %d: its publisher did not trust event key %s, which this verifier trusts", id, p.seq, kid)
	}
	return nil
}

// best returns the latest complete snapshot of the scan, every chunk of it
// signed by a trusted key, that a denylist may start from (unusable), or
// an error wrapping errNoSnapshot that says why there is none.
func (sc *snapshotScan) best(trusted []string, created time.Time, first, last uint64) (id string, seq uint64, err error) {
	var why []error
	for pid, p := range sc.byID {
		if err := p.unusable(pid, trusted, created, first, last); err != nil {
			why = append(why, err)
			continue
		}
		if slices.Contains(p.have, false) {
			why = append(why, fmt.Errorf("snapshot %s at %d: incomplete", pid, p.seq))
			continue
		}
		if id == "" || p.seq > seq || (p.seq == seq && pid > id) {
			id, seq = pid, p.seq
		}
	}
	if id == "" {
		if sc.msgs == 0 {
			why = append(why, errSnapshotsEmpty)
		}
		return "", 0, fmt.Errorf("%w: %w", errNoSnapshot, errors.Join(append(sc.refused, why...)...))
	}
	return id, seq, nil
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

// newestSnapshot returns the snapshot of the chunk last published on
// StreamSnapshots, if it passes its signature check: the one a scan
// usually finds best, loaded while it is read.
func (f *Follower) newestSnapshot(ctx context.Context) string {
	d, ok, err := f.conn.LastSnapshotChunk(ctx)
	if err != nil || !ok {
		return ""
	}
	e, err := bus.OpenEvent(d, bus.StreamSnapshots, f.keys.EventKey)
	if err != nil || e.Type != bus.TypeSnapshotChunk {
		return ""
	}
	return e.Snapshot.ID
}

// snapshotPasses bounds the reads of StreamSnapshots a start from a
// snapshot makes: the first loads the newest snapshot while it looks for
// the best; if another is best, the second loads that one.
const snapshotPasses = 2

// restore starts an empty denylist from the latest usable snapshot,
// writing it chunk by chunk as it is read, with its sequence last, and
// returns that sequence, from which following continues. Without a usable
// snapshot it returns 0, with the denylist empty, and the stream is
// replayed from its start. Only store and bus errors are returned.
func (f *Follower) restore(ctx context.Context, first, last uint64) (uint64, error) {
	started := time.Now()
	created, err := f.conn.StreamCreated(ctx, bus.StreamRevocations)
	if err != nil {
		return 0, err
	}
	trusted := f.keys.EventKeys()
	load := f.newestSnapshot(ctx)
	var why error
	for range snapshotPasses {
		res, next, err := f.loadSnapshot(ctx, load, trusted, created, first, last)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if !errors.Is(err, errNoSnapshot) {
				return 0, err
			}
			why = err
			break
		}
		if res.id == "" {
			load = next // another snapshot than the one loaded is best
			continue
		}
		for _, kid := range res.revokedKeys {
			f.keys.Remove(kid)
		}
		f.snapSeq.Store(res.seq)
		f.notifyApplied()
		f.log.Info("denylist started from a snapshot", "snapshot", res.id, "seq", res.seq,
			"entries", res.entries, "took", time.Since(started).Round(time.Millisecond))
		return res.seq, nil
	}
	if why == nil {
		why = fmt.Errorf("%w: the snapshots changed while they were read", errNoSnapshot)
	}
	f.snapFallbacks.Add(1)
	level := slog.LevelWarn
	if errors.Is(why, errSnapshotsEmpty) || errors.Is(why, jetstream.ErrStreamNotFound) { // none yet, or an older issuer
		level = slog.LevelInfo
	} else {
		f.snapUnusable.Add(1)
	}
	f.log.Log(ctx, level, "no denylist snapshot to start from; replaying the whole revocation stream", "err", why)
	return 0, nil
}

// loadedSnapshot is a snapshot a denylist started from.
type loadedSnapshot struct {
	id          string
	seq         uint64
	entries     int
	revokedKeys []string // Herald's keys it revokes, by kid
}

// loadSnapshot scans StreamSnapshots and loads snapshot load, if not
// empty, into the empty denylist as it reads it. If load is the best
// snapshot (snapshotScan.best), it sets the denylist's sequence to that
// snapshot's and returns it; otherwise it empties the denylist again and
// returns next, the best snapshot, to load instead. Without a usable
// snapshot it returns an error wrapping errNoSnapshot; store errors are
// returned as they are. The denylist is empty after every error.
func (f *Follower) loadSnapshot(ctx context.Context, load string, trusted []string, created time.Time, first, last uint64) (
	res loadedSnapshot, next string, err error) {
	l, err := f.db.NewLoader()
	if err != nil {
		return loadedSnapshot{}, "", err
	}
	defer func() {
		if res.id == "" {
			if aerr := l.Abort(); aerr != nil {
				err = errors.Join(err, fmt.Errorf("empty the denylist after a snapshot load: %w", aerr))
			}
		}
	}()
	var entries []store.Entry
	skip := false // load is not usable: what it writes would be emptied
	apply := func(c *bus.Snapshot) error {
		if skip {
			return nil
		}
		p := &snapshotParts{seq: c.Seq, created: c.StreamCreated, count: c.Count, keys: c.EventKeys}
		if p.unusable(c.ID, trusted, created, first, last) != nil {
			skip = true
			return nil
		}
		entries = entries[:0]
		for _, e := range c.Entries {
			r := bus.Revocation{Kind: e.Kind, Value: e.Value, At: e.At, Until: e.Until, Issuer: e.Issuer}
			f.bound(&r, c.Seq)
			entries = entriesFor(entries, &r)
			if e.Kind == bus.KindKey && e.Issuer == "" {
				res.revokedKeys = append(res.revokedKeys, e.Value)
			}
		}
		if err := l.Add(entries); err != nil {
			return fmt.Errorf("apply snapshot %s at %d: %w", c.ID, c.Seq, err)
		}
		return nil
	}
	sc, err := scanSnapshots(ctx, f.conn, f.keys.EventKey, load, apply)
	if err != nil {
		return loadedSnapshot{}, "", err
	}
	id, seq, err := sc.best(trusted, created, first, last)
	if err != nil {
		return loadedSnapshot{}, "", err
	}
	if id != load || skip {
		return loadedSnapshot{}, id, nil
	}
	if err := l.Finish(seq); err != nil {
		return loadedSnapshot{}, "", fmt.Errorf("apply snapshot %s at %d: %w", id, seq, err)
	}
	res.id, res.seq, res.entries = id, seq, l.Len()
	return res, "", nil
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
