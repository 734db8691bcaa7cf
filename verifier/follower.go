package verifier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// maxBatch bounds how many stream messages go into one Pebble batch.
const maxBatch = 4096

// progressEvery is how often catch-up progress is logged.
const progressEvery = 2 * time.Second

// Follower applies the HERALD stream to a denylist, in order, and knows how
// far behind the stream head it is. The applied sequence is written in the
// same batch as the entries, so a restart resumes exactly after the last
// applied event.
//
// It checks that each event's stream sequence is the last applied plus one.
// JetStream skips ahead silently when retention has dropped what a consumer
// asked for; the Follower reports such a gap, stops being caught up, and
// rebuilds the denylist from a full replay of the stream.
type Follower struct {
	// retention is the HERALD stream's MaxAge: no revocation needs to be
	// remembered much longer, since the issuer sizes the stream to the
	// longest token lifetime. It bounds what an event may ask for.
	retention atomic.Int64

	conn *bus.Conn
	db   *store.DB
	keys *KeySet
	log  *slog.Logger

	head     atomic.Uint64 // last stream sequence known to exist
	first    atomic.Uint64 // first sequence the stream held when last asked
	target   atomic.Uint64 // the head when following started; caught up once applied reaches it
	caughtUp atomic.Bool
	hasState atomic.Bool  // caught up at least once since start or the last rebuild
	contact  atomic.Int64 // unix nanoseconds of the last sign of life from the bus
	gaps     atomic.Uint64
	bad      atomic.Uint64 // malformed events skipped
	refused  atomic.Uint64 // events refused for their signature: unsigned, forged, untrusted, misplaced
	events   atomic.Uint64 // events applied since start
	stalls   atomic.Uint64 // consumers restarted because they stopped delivering
	snapSeq  atomic.Uint64 // sequence of the snapshot the denylist last started from
	// refusedSeq is the first sequence whose event the denylist skipped
	// for its signature since it started empty, 0 if none: the denylist
	// holds everything only up to the sequence before it. Kept in db.
	refusedSeq atomic.Uint64
	// snapFallbacks counts starts from an empty denylist that found no
	// usable snapshot and replayed the whole stream.
	snapFallbacks atomic.Uint64
	// snapUnusable counts the snapFallbacks that found a snapshot but
	// could not use it (incomplete, forged, tampered, or older than the
	// stream's retention), rather than none at all.
	snapUnusable atomic.Uint64

	// onApply, if set before Run, is called with the revocations of every
	// batch once it is committed, on the applying goroutine.
	onApply func([]*bus.Revocation)

	mu      sync.Mutex
	lastErr string
	lastGap string
	applied chan struct{} // closed and replaced whenever the applied sequence advances
}

// FollowerOption configures a Follower at construction.
type FollowerOption func(*Follower)

// WithOnApply makes the Follower call fn with the revocations of every
// batch once it is committed, on the applying goroutine; fn must not
// block. A sidecar ends the requests in flight they match with it
// (LiveSet.Revoke).
func WithOnApply(fn func([]*bus.Revocation)) FollowerOption {
	return func(f *Follower) { f.onApply = fn }
}

// NewFollower returns a Follower applying the stream read through conn to
// db, and dropping revoked keys from keys.
func NewFollower(conn *bus.Conn, db *store.DB, keys *KeySet, log *slog.Logger, opts ...FollowerOption) *Follower {
	if log == nil {
		log = slog.Default()
	}
	f := &Follower{conn: conn, db: db, keys: keys, log: log, applied: make(chan struct{})}
	for _, o := range opts {
		o(f)
	}
	f.touch()
	switch b, ok, err := db.Get(stateRefused); {
	case err != nil || ok && len(b) != 8:
		f.refusedSeq.Store(1) // unknown: as if nothing were complete
	case ok:
		f.refusedSeq.Store(binary.BigEndian.Uint64(b))
	}
	return f
}

// OnApply makes the Follower call fn with the revocations of every batch
// once it is committed, on the applying goroutine; fn must not block.
// Call it before Run, for a callback that needs the Follower built first;
// else pass WithOnApply to NewFollower.
func (f *Follower) OnApply(fn func([]*bus.Revocation)) { f.onApply = fn }

// stateRefused is the denylist's state key holding refusedSeq.
const stateRefused = "follower/refused"

// setRefused records that the event at seq was skipped for its signature,
// if it is the first since the denylist started empty; zero clears it.
// The record is written before the batch that skips the event.
func (f *Follower) setRefused(seq uint64) error {
	if seq != 0 && f.refusedSeq.Load() != 0 {
		return nil
	}
	err := f.db.UpdateNoSync(func(tx *store.Tx) error {
		if seq == 0 {
			tx.Delete(stateRefused)
		} else {
			tx.Set(stateRefused, binary.BigEndian.AppendUint64(nil, seq))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record refused event %d: %w", seq, err)
	}
	f.refusedSeq.Store(seq)
	return nil
}

// Complete returns the last sequence up to which the denylist applied
// every event of the stream, refusing none: the applied sequence, or the
// one before the first event it skipped for its signature (an untrusted
// or unknown key, a forgery). A snapshot of the denylist says what every
// verifier should hold only up to it.
func (f *Follower) Complete() uint64 {
	if r := f.refusedSeq.Load(); r != 0 {
		return r - 1
	}
	return f.db.Applied()
}

// touch records a sign of life from the bus: a delivery or an answer to a
// stream info request.
func (f *Follower) touch() { f.contact.Store(time.Now().UnixNano()) }

// LastContact returns when the Follower last heard from the bus: a
// delivery or a successful Probe. Before any, it is when the Follower was
// created.
func (f *Follower) LastContact() time.Time { return time.Unix(0, f.contact.Load()) }

// Probe asks the bus for the stream's head. On success it records the
// contact and the head, and when resync is true (the verifier was cut off
// and may have missed events) it stops being caught up until it has
// applied everything up to that head.
func (f *Follower) Probe(ctx context.Context, resync bool) error {
	first, last, err := f.conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		return err
	}
	f.touch()
	f.first.Store(first)
	f.storeHead(last)
	if resync && first <= last && f.db.Applied() < last {
		f.target.Store(last)
		f.caughtUp.Store(false)
		f.log.Info("catching up after being cut off from the bus", "applied", f.db.Applied(), "head", last)
		if applied := f.db.Applied(); applied >= last { // applied while we looked
			f.markCaughtUp(applied)
		}
	}
	return nil
}

// HasState reports whether the denylist has been caught up with the stream
// at least once since the Follower started or last rebuilt it: it holds
// every revocation up to some recent point.
func (f *Follower) HasState() bool { return f.hasState.Load() }

// WaitApplied blocks until the denylist has applied sequence seq or ctx
// ends. Once it returns nil, Verify refuses every token the revocations up
// to seq match.
func (f *Follower) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		f.mu.Lock()
		ch := f.applied
		f.mu.Unlock()
		if f.db.Applied() >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (f *Follower) notifyApplied() {
	f.mu.Lock()
	close(f.applied)
	f.applied = make(chan struct{})
	f.mu.Unlock()
}

// errEventKeyMissing stops the Follower at an event signed by an event key
// it has not seen: the event is applied once the key arrives.
var errEventKeyMissing = errors.New("waiting for the event key of the next revocation")

// errGap reports that the stream no longer holds events the denylist has
// not applied.
type errGap struct{ applied, next uint64 }

func (e errGap) Error() string {
	return fmt.Sprintf("stream gap: applied %d, next available %d", e.applied, e.next)
}

// Run follows the stream until ctx ends. It retries while the stream does
// not exist or NATS is unreachable, and rebuilds after a gap. It returns
// an error wrapping store.ErrBroken once the denylist cannot be written.
func (f *Follower) Run(ctx context.Context) error {
	const minBackoff, maxBackoff = 250 * time.Millisecond, 2 * time.Second
	// Events are checked against the event keys of the bucket: read them first.
	select {
	case <-f.keys.Ready():
	case <-ctx.Done():
		return nil
	}
	backoff := minBackoff
	for {
		started := time.Now()
		err := f.follow(ctx)
		if time.Since(started) > 2*maxBackoff {
			backoff = minBackoff // it ran a while: a new outage starts fast again
		}
		if ctx.Err() != nil {
			return nil
		}
		f.caughtUp.Store(false)
		if errors.Is(err, store.ErrBroken) {
			// The denylist cannot record revocations any more (full disk,
			// I/O error, corruption): stop giving verdicts, even from the
			// last state, and stop; a restart rebuilds it if need be.
			f.hasState.Store(false)
			return fmt.Errorf("denylist unusable: %w", err)
		}
		var gap errGap
		if errors.As(err, &gap) {
			f.gaps.Add(1)
			f.setErr(&f.lastGap, gap.Error())
			f.log.Error("revocation stream gap: events were lost before this verifier applied them; rebuilding denylist from a full replay",
				"applied", gap.applied, "next", gap.next)
			f.hasState.Store(false)
			if err := f.db.Reset(); err != nil {
				return fmt.Errorf("rebuild denylist: %w", err)
			}
			continue
		}
		f.setErr(&f.lastErr, err.Error())
		f.log.Warn("following revocations interrupted; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (f *Follower) setErr(dst *string, s string) {
	f.mu.Lock()
	*dst = s
	f.mu.Unlock()
}

func (f *Follower) follow(ctx context.Context) error {
	first, last, err := f.conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		return err
	}
	if age, err := f.conn.StreamMaxAge(ctx, bus.StreamRevocations); err == nil {
		f.retention.Store(int64(age))
	}
	applied := f.db.Applied()
	if applied == 0 && f.db.Len() == 0 {
		if err := f.setRefused(0); err != nil { // a new denylist has refused nothing yet
			return err
		}
		// An empty denylist starts from the latest snapshot, if there is
		// one, instead of checking every event of the stream.
		if applied, err = f.restore(ctx, first, last); err != nil {
			return err
		}
	}
	if err := f.setTarget(applied, first, last); err != nil {
		return err
	}
	if !f.caughtUp.Load() {
		f.log.Info("catching up with revocation stream", "applied", applied, "head", last)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan bus.Delivery, maxBatch)
	stop, err := f.conn.Follow(ctx, bus.StreamRevocations, applied, func(d bus.Delivery) {
		select {
		case ch <- d:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return err
	}
	defer stop()

	progress := time.NewTicker(progressEvery)
	defer progress.Stop()
	batch := make([]bus.Delivery, 0, maxBatch)
	var lastApplied uint64
	behind := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-progress.C:
			// An ordered consumer that lost its server (a restart, a
			// partition) normally recreates itself; if it has delivered
			// nothing for a whole tick while the stream holds more, start
			// a new one.
			applied := f.db.Applied()
			wasBehind := behind
			behind = f.pending(applied) > 0
			if wasBehind && behind && applied == lastApplied && f.conn.Connected() {
				f.stalls.Add(1)
				return fmt.Errorf("revocation consumer stalled at %d, head %d", applied, f.head.Load())
			}
			lastApplied = applied
			if f.caughtUp.Load() {
				continue
			}
			f.log.Info("catching up", "applied", f.db.Applied(), "head", f.head.Load())
			// What we wait for may have expired since we looked.
			first, last, err := f.conn.StreamHead(ctx, bus.StreamRevocations)
			if err != nil {
				return err
			}
			if err := f.setTarget(f.db.Applied(), first, last); err != nil {
				return err
			}
			continue
		case d := <-ch:
			batch = append(batch[:0], d)
			f.touch()
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case d := <-ch:
				batch = append(batch, d)
			default:
				break drain
			}
		}
		if err := f.apply(batch); err != nil {
			return err
		}
	}
}

// bound limits a revocation's times to what an honest issuer can send:
// Until no later than now plus the stream's retention plus leeway, so that
// an event dated in the future (a bad clock, or a forged "all") cannot
// outlive the stream. At is not pulled back for the kinds that cut off
// every token issued up to it (session, subject, client, tenant, all): the
// issuer's clock dated both the tokens and the revocation, and pulling At
// back to this verifier's clock would let tokens that issuer signed just
// before it through. It is only kept no later than Until, past which the
// entry is gone anyway. A token or key revocation's At is bounded to now
// plus leeway.
func (f *Follower) bound(r *bus.Revocation, seq uint64) {
	now := time.Now()
	if ret := time.Duration(f.retention.Load()); ret > 0 {
		if latest := now.Add(ret + DefaultLeeway); r.Until.After(latest) {
			f.log.Warn("revocation kept longer than the stream; bounded", "seq", seq, "kind", r.Kind, "until", r.Until)
			r.Until = latest
		}
	}
	latest := now.Add(DefaultLeeway)
	switch {
	case !r.At.After(latest):
	case cutsOff(r.Kind):
		f.log.Error("revocation dated in the future: the issuer's clock is ahead of this verifier's; enforced as dated",
			"seq", seq, "kind", r.Kind, "at", r.At, "ahead", r.At.Sub(now).Round(time.Millisecond))
		if r.At.After(r.Until) {
			r.At = r.Until
		}
	default:
		f.log.Warn("revocation dated in the future; bounded", "seq", seq, "kind", r.Kind, "at", r.At)
		r.At = latest
	}
}

// cutsOff reports whether a revocation of kind k refuses every token
// issued up to its time.
func cutsOff(k bus.Kind) bool {
	switch k {
	case bus.KindSession, bus.KindSubject, bus.KindClient, bus.KindTenant, bus.KindAll:
		return true
	}
	return false
}

// setTarget decides, from the stream's first and last sequence, what must
// be applied before the denylist is caught up, and finds gaps that need no
// message to show: a stream recreated behind the denylist, or retention
// that dropped events the denylist has not applied.
func (f *Follower) setTarget(applied, first, last uint64) error {
	switch {
	case last < applied:
		return errGap{applied: applied, next: first} // the stream was recreated
	case applied > 0 && first > applied+1:
		return errGap{applied: applied, next: first}
	}
	f.first.Store(first)
	f.storeHead(last)
	target := last
	if first > last {
		target = applied // retention emptied the stream: nothing to wait for
	}
	f.target.Store(target)
	if applied >= target {
		f.markCaughtUp(applied)
	}
	return nil
}

// apply checks the sequences of batch and applies it in one store batch.
func (f *Follower) apply(batch []bus.Delivery) error {
	applied := f.db.Applied()
	entries := make([]store.Entry, 0, len(batch))
	var revs []*bus.Revocation
	var revokedKeys []string
	seq := applied
	var gap error
	var spans []trace.Span
	opened := f.open(batch, applied)
	for i, d := range batch {
		if d.Seq <= seq {
			continue // redelivery of something already applied
		}
		if seq != 0 && d.Seq != seq+1 {
			gap = errGap{applied: seq, next: d.Seq} // after applying what came before it
			break
		}
		seq = d.Seq
		f.storeHead(d.Seq + d.Pending)
		e, err := opened[i].e, opened[i].err
		if kid := bus.SignatureKid(d); errors.Is(err, bus.ErrUntrusted) && !f.keys.Untrusted(kid) {
			// Signed by an event key not seen yet (deleted, or not
			// published yet): wait for it here rather than skip a
			// revocation that may be genuine.
			gap = fmt.Errorf("%w: seq %d signed by event key %q", errEventKeyMissing, d.Seq, kid)
			seq = d.Seq - 1
			break
		}
		if err == nil && e.Type != bus.TypeRevocation {
			err = fmt.Errorf("%w: type %s on the revocation stream", bus.ErrMalformed, e.Type)
		}
		if err != nil {
			// Skipping keeps the fleet moving; the sequence still advances.
			reason := bus.Reason(err)
			if reason == "malformed" {
				f.bad.Add(1) // every verifier skips it alike
			} else {
				f.refused.Add(1)
				if err := f.setRefused(d.Seq); err != nil {
					return err
				}
			}
			f.log.Error("event on revocation stream refused", "seq", d.Seq, "subject", d.Subject, "reason", reason, "err", err)
			continue
		}
		if d.Header.Get("Traceparent") != "" {
			_, span := tracer().Start(bus.TraceContext(context.Background(), d), "herald.verifier.apply",
				trace.WithAttributes(attribute.Int64("herald.seq", int64(d.Seq)),
					attribute.String("herald.kind", e.Revocation.Kind.String())))
			spans = append(spans, span)
		}
		f.bound(e.Revocation, d.Seq)
		entries = entriesFor(entries, e.Revocation)
		if e.Revocation.Kind == bus.KindKey && e.Revocation.Issuer == "" {
			// Herald's keys by kid; a revocation limited to one issuer
			// is enforced by the denylist alone.
			revokedKeys = append(revokedKeys, e.Revocation.AllValues()...)
		}
		revs = append(revs, e.Revocation)
	}
	if seq == applied {
		return gap
	}
	// Counted before the denylist shows seq applied, so that whoever sees
	// seq in Status also sees its events counted.
	n := uint64(seq - applied)
	f.events.Add(n)
	err := f.db.Apply(seq, entries)
	if err != nil {
		f.events.Add(-n)
	}
	for _, span := range spans { // each revocation's trace ends once it is enforced here
		if err != nil {
			span.RecordError(err)
		}
		span.End()
	}
	if err != nil {
		return fmt.Errorf("apply revocations up to %d: %w", seq, err)
	}
	for _, kid := range revokedKeys {
		f.keys.Revoke(kid)
	}
	if f.onApply != nil && len(revs) > 0 {
		f.onApply(revs)
	}
	f.notifyApplied()
	if gap != nil {
		return gap
	}
	if !f.caughtUp.Load() && seq >= f.target.Load() {
		f.markCaughtUp(seq)
	}
	return nil
}

// openedEvent is a delivery after its signature check.
type openedEvent struct {
	e   *bus.Event
	err error
}

// parallelOpenMin is the batch size from which signatures are checked on
// every CPU: a catch-up reads thousands of events per batch, and an
// Ed25519 check costs several times the decoding.
const parallelOpenMin = 64

// open checks the signatures of batch and decodes its events, except the
// redeliveries of what is applied, which apply skips.
func (f *Follower) open(batch []bus.Delivery, applied uint64) []openedEvent {
	return openEvents(batch, bus.StreamRevocations, f.keys.EventKey, applied)
}

// openEvents checks the signatures of batch, read from stream, and
// decodes its events, spread over the CPUs for large batches. Deliveries
// at or before sequence after are left alone (a zero openedEvent).
func openEvents(batch []bus.Delivery, stream string, keys bus.EventKeyFunc, after uint64) []openedEvent {
	out := make([]openedEvent, len(batch))
	one := func(i int) {
		if batch[i].Seq > after {
			out[i].e, out[i].err = bus.OpenEvent(batch[i], stream, keys)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(batch)/parallelOpenMin+1)
	if workers <= 1 {
		for i := range batch {
			one(i)
		}
		return out
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(batch); i += workers {
				one(i)
			}
		})
	}
	wg.Wait()
	return out
}

func (f *Follower) markCaughtUp(applied uint64) {
	f.hasState.Store(true)
	if !f.caughtUp.Swap(true) {
		f.log.Info("caught up with revocation stream", "applied", applied, "denylist", f.db.Len())
	}
}

func (f *Follower) storeHead(seq uint64) {
	for {
		old := f.head.Load()
		if seq <= old || f.head.CompareAndSwap(old, seq) {
			return
		}
	}
}

// pending returns how many events the stream holds after applied: up to
// the head, and not before the first sequence it still holds (an emptied
// stream has nothing to deliver).
func (f *Follower) pending(applied uint64) uint64 {
	head, first := f.head.Load(), f.first.Load()
	if first > 0 {
		applied = max(applied, first-1)
	}
	if head <= applied {
		return 0
	}
	return head - applied
}

// CaughtUp reports whether the denylist has applied every revocation that
// existed when following (re)started.
func (f *Follower) CaughtUp() bool { return f.caughtUp.Load() }

// FollowerStatus is a snapshot of a Follower's progress.
type FollowerStatus struct {
	Applied   uint64 `json:"applied_seq"`
	Head      uint64 `json:"stream_head"`
	Lag       uint64 `json:"lag"`
	CaughtUp  bool   `json:"caught_up"`
	Gaps      uint64 `json:"gaps"`
	Malformed uint64 `json:"malformed_events"`
	// Refused counts events dropped for their signature: unsigned, signed
	// by an untrusted key, forged, or signed for another stream.
	Refused       uint64 `json:"refused_events"`
	EventsApplied uint64 `json:"events_applied"`
	Stalls        uint64 `json:"consumer_restarts"`
	// SnapshotSeq is the sequence of the snapshot the denylist last
	// started from, 0 if it replayed the stream from its start.
	SnapshotSeq uint64 `json:"snapshot_seq,omitempty"`
	// SnapshotFallbacks counts starts that found no usable snapshot.
	SnapshotFallbacks uint64 `json:"snapshot_fallbacks,omitempty"`
	// SnapshotUnusable counts the SnapshotFallbacks that found a snapshot
	// they could not use (incomplete, forged, tampered, or older than the
	// stream's retention), rather than none at all.
	SnapshotUnusable uint64 `json:"snapshot_unusable,omitempty"`
	LastGap          string `json:"last_gap,omitempty"`
	LastError        string `json:"last_error,omitempty"`
}

// Status returns a snapshot of the Follower's progress.
func (f *Follower) Status() FollowerStatus {
	applied, head := f.db.Applied(), f.head.Load()
	s := FollowerStatus{
		Applied: applied, Head: head, CaughtUp: f.caughtUp.Load(),
		Gaps: f.gaps.Load(), Malformed: f.bad.Load(), Refused: f.refused.Load(), EventsApplied: f.events.Load(),
		Stalls: f.stalls.Load(), SnapshotSeq: f.snapSeq.Load(), SnapshotFallbacks: f.snapFallbacks.Load(),
		SnapshotUnusable: f.snapUnusable.Load(),
	}
	s.Lag = f.pending(applied)
	f.mu.Lock()
	s.LastGap, s.LastError = f.lastGap, f.lastErr
	f.mu.Unlock()
	return s
}
