package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
)

// Keys of the HERALD_SESSIONS bucket.
const (
	kvSession = "session." // session.<sid> -> sessionRecord
	kvSubject = "subject." // subject.<sha256 hex of sub>.<sid> -> empty: sessions of a subject
	kvCutoff  = "cutoff."  // cutoff.<kind>.<sha256 hex of value> -> cutoffEntry
)

const (
	// maxUsedRefresh bounds the used refresh tokens a session remembers
	// for reuse detection. An older one presented again is refused as
	// unknown rather than ending the session.
	maxUsedRefresh = 100
	// sessionsMargin keeps entries this long beyond the absolute session
	// lifetime, for clock differences between issuers and NATS servers.
	sessionsMargin = 10 * time.Minute
	// maxSessionWrites bounds how often one operation re-reads a session
	// after another writer changed it first.
	maxSessionWrites = 16
)

// validSID matches a session id as CreateSession makes them.
var validSID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// sessionStore is HERALD_SESSIONS: the sessions every issuer replica
// reads and changes, each change a compare-and-set on the entry's
// revision, so that of two replicas changing one session at once exactly
// one succeeds and the other reads again.
type sessionStore struct {
	kv jetstream.KeyValue
	// write writes entries through the connection's group committer
	// (bus.Conn.WriteKV): concurrent requests' writes are synced together.
	write func(ctx context.Context, writes ...bus.KVWrite) ([]uint64, error)
	// cutoffs reads cut-off entries, sharing the reads of concurrent
	// requests.
	cutoffs *sharedReads[string, jetstream.KeyValueEntry]
	// seal signs an entry's JSON for its name; unseal checks an entry and
	// returns its JSON. Entries are signed by an issuer's event key, so
	// that write access to the bucket is not enough to forge a session.
	seal   func(name string, data []byte) ([]byte, error)
	unseal func(name string, value []byte) ([]byte, error)

	// beforeUpdate, when set by tests, runs before every compare-and-set.
	beforeUpdate func()
}

// newSessionStore returns the store of the sessions in kv, whose entries
// conn's signer seals and trusted's event keys open.
func newSessionStore(kv jetstream.KeyValue, conn *bus.Conn, trusted *verifier.KeySet) *sessionStore {
	return &sessionStore{kv: kv,
		cutoffs: &sharedReads[string, jetstream.KeyValueEntry]{read: kv.Get},
		write: func(ctx context.Context, writes ...bus.KVWrite) ([]uint64, error) {
			return conn.WriteKV(ctx, bus.BucketSessions, writes...)
		},
		seal: func(name string, data []byte) ([]byte, error) {
			return conn.Signer().SignEntry(bus.BucketSessions, name, data)
		},
		unseal: func(name string, value []byte) ([]byte, error) {
			return bus.OpenEntry(bus.BucketSessions, name, value, trusted.EventKey)
		},
	}
}

// sessionEntry is a session with the revision it was read at.
type sessionEntry struct {
	sess *sessionRecord
	rev  uint64
	data []byte
}

// get returns session sid, or a nil record when there is none. The read
// goes to the stream leader (bus.EnsureSessions), so it sees every
// acknowledged write.
func (st *sessionStore) get(ctx context.Context, sid string) (sessionEntry, error) {
	if !validSID.MatchString(sid) {
		return sessionEntry{}, nil
	}
	e, err := st.kv.Get(ctx, kvSession+sid)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return sessionEntry{}, nil
	case err != nil:
		return sessionEntry{}, fmt.Errorf("read session %s: %w: %w", sid, errUnavailable, err)
	}
	data, err := st.unseal(e.Key(), e.Value())
	if err != nil {
		return sessionEntry{}, fmt.Errorf("read session %s: entry at revision %d refused: %w", sid, e.Revision(), err)
	}
	var sess sessionRecord
	if err := json.Unmarshal(data, &sess); err != nil || sess.ID != sid {
		return sessionEntry{}, fmt.Errorf("read session %s: malformed entry at revision %d", sid, e.Revision())
	}
	if sess.Placed && sess.Seq == 0 {
		sess.Seq = e.Revision() // as created: see create
	}
	return sessionEntry{sess: &sess, rev: e.Revision(), data: e.Value()}, nil
}

// create stores a new session and its subject's index entry, the index
// first, in one write of the group committer: normally one batch, synced
// once with those of concurrent requests. An index entry without its
// session is skipped by ofSubject. The session's Seq, its place in the
// bucket's order before or after each cut-off entry, is the revision of
// its entry: stored as 0 with Placed set, since it is known only once
// written, and filled in when read (get), so that the first update
// stores it.
func (st *sessionStore) create(ctx context.Context, sess *sessionRecord) error {
	sess.Seq, sess.Placed = 0, true
	data, err := st.encode(sess)
	if err != nil {
		return err
	}
	revs, err := st.write(ctx,
		bus.KVWrite{Key: subjectIndex(sess.Subject) + sess.ID, Put: true},
		bus.KVWrite{Key: kvSession + sess.ID, Value: data})
	if err != nil {
		return fmt.Errorf("create session %s: %w", sess.ID, err)
	}
	sess.Seq = revs[1]
	return nil
}

// update writes sess over the revision it was read at. It returns an
// error wrapping jetstream.ErrKeyRevisionMismatch when another writer came
// first. When the answer is lost (a timeout: the write may have landed),
// it reads the entry back and reports success if it holds sess.
func (st *sessionStore) update(ctx context.Context, sess *sessionRecord, rev uint64) error {
	data, err := st.encode(sess)
	if err != nil {
		return err
	}
	if st.beforeUpdate != nil {
		st.beforeUpdate()
	}
	_, err = st.write(ctx, bus.KVWrite{Key: kvSession + sess.ID, Value: data, Revision: rev})
	if err == nil || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return err
	}
	if cur, gerr := st.get(ctx, sess.ID); gerr == nil && cur.sess != nil && cur.rev > rev && string(cur.data) == string(data) {
		return nil
	}
	return fmt.Errorf("write session %s: %w", sess.ID, err)
}

// encode returns the signed entry of sess.
func (st *sessionStore) encode(sess *sessionRecord) ([]byte, error) {
	data, err := json.Marshal(sess)
	if err == nil {
		data, err = st.seal(kvSession+sess.ID, data)
	}
	if err != nil {
		return nil, fmt.Errorf("encode session %s: %w", sess.ID, err)
	}
	return data, nil
}

// ofSubject returns the sessions of sub, in no particular order.
func (st *sessionStore) ofSubject(ctx context.Context, sub string) ([]*sessionRecord, error) {
	prefix := subjectIndex(sub)
	lister, err := st.kv.ListKeysFiltered(ctx, prefix+"*")
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w: %w", errUnavailable, err)
	}
	var sids []string
	for k := range lister.Keys() {
		sids = append(sids, strings.TrimPrefix(k, prefix))
	}
	var out []*sessionRecord
	for _, sid := range sids {
		e, err := st.get(ctx, sid)
		if err != nil {
			return nil, err
		}
		if e.sess != nil && e.sess.Subject == sub {
			out = append(out, e.sess)
		}
	}
	return out, nil
}

// each calls fn with every session in the bucket until fn returns an
// error, which each returns.
func (st *sessionStore) each(ctx context.Context, fn func(*sessionRecord) error) error {
	// Entries expire (the bucket's TTL): a watcher may then never report
	// the end of the current entries, so the scan is bounded.
	ctx, cancel := context.WithTimeout(ctx, 2*bus.ListTimeout)
	defer cancel()
	w, err := st.kv.Watch(ctx, kvSession+"*", jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("scan sessions: %w: %w", errUnavailable, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("scan sessions: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("scan sessions: %w: watcher closed", errUnavailable)
			}
			if e == nil { // every current entry has been delivered
				return nil
			}
			data, err := st.unseal(e.Key(), e.Value())
			if err != nil {
				continue // not signed by a trusted issuer: no session
			}
			var sess sessionRecord
			if json.Unmarshal(data, &sess) != nil || kvSession+sess.ID != e.Key() {
				continue
			}
			if sess.Placed && sess.Seq == 0 {
				sess.Seq = e.Revision() // as created: see create
			}
			if err := fn(&sess); err != nil {
				return err
			}
		}
	}
}

// cutoffEntry is a revocation that stops sessions from being refreshed,
// as HERALD_SESSIONS shares it between replicas: of kind subject, client,
// tenant or all, made At (the clock of the replica that took it) and
// written to the bucket at Written (the same clock). It covers every
// session created at or before At and, when it was written promptly (see
// Service.covers), every session created before the entry was written (a
// smaller Seq than the entry's revision). The entry lives as long as the
// bucket keeps entries, longer than any session it covers.
type cutoffEntry struct {
	Kind    string    `json:"kind"`
	Value   string    `json:"value"`
	At      time.Time `json:"at"`
	Written time.Time `json:"written,omitzero"`
}

// sharedCutoff is a cut-off entry as read, with its revision.
type sharedCutoff struct {
	at      time.Time
	written time.Time // zero for an entry of an older issuer
	rev     uint64
}

// cutoffName returns the key of the cut-off of kind k for value v. The
// value is hashed: it may hold characters a key may not.
func cutoffName(k bus.Kind, v string) string {
	sum := sha256.Sum256([]byte(v))
	return kvCutoff + k.String() + "." + hex.EncodeToString(sum[:])
}

// putCutoff records, once the server has acknowledged it, that sessions
// covered by a revocation of kind k for v made at at can no longer be
// refreshed; now is when it is written. An entry for the same kind and
// value made at or after at is kept, since it covers every session this
// one does; an older one is replaced, compare-and-set, so that a late
// write never moves a cut-off back.
func (st *sessionStore) putCutoff(ctx context.Context, k bus.Kind, v string, at, now time.Time) error {
	name := cutoffName(k, v)
	data, err := json.Marshal(cutoffEntry{Kind: k.String(), Value: v, At: at.UTC(), Written: now.UTC()})
	if err == nil {
		data, err = st.seal(name, data)
	}
	if err != nil {
		return fmt.Errorf("encode cut-off %s: %w", name, err)
	}
	for range maxSessionWrites {
		cur, ok, err := st.cutoff(ctx, k, v)
		switch {
		case errors.Is(err, errUnavailable):
			return err
		case err != nil: // no trusted issuer signed it: replaced
			_, err = st.kv.Put(ctx, name, data)
		case ok && !cur.at.Before(at):
			return nil
		case ok:
			_, err = st.kv.Update(ctx, name, data, cur.rev)
		default:
			_, err = st.kv.Create(ctx, name, data)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("record cut-off of %s %q: %w", k, v, err)
		}
	}
	return fmt.Errorf("record cut-off of %s %q: %w: too many concurrent writers", k, v, errUnavailable)
}

// cutoff returns the cut-off of kind k for v, and false if there is none.
// An entry no trusted issuer signed is an error: refreshes fail closed.
func (st *sessionStore) cutoff(ctx context.Context, k bus.Kind, v string) (sharedCutoff, bool, error) {
	name := cutoffName(k, v)
	e, err := st.cutoffs.get(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return sharedCutoff{}, false, nil
	case err != nil:
		return sharedCutoff{}, false, fmt.Errorf("read cut-off of %s: %w: %w", k, errUnavailable, err)
	}
	data, err := st.unseal(e.Key(), e.Value())
	if err != nil {
		return sharedCutoff{}, false, fmt.Errorf("read cut-off %s: entry at revision %d refused: %w", name, e.Revision(), err)
	}
	var c cutoffEntry
	if err := json.Unmarshal(data, &c); err != nil || c.Kind != k.String() || c.Value != v {
		return sharedCutoff{}, false, fmt.Errorf("read cut-off %s: malformed entry at revision %d", name, e.Revision())
	}
	return sharedCutoff{at: c.At, written: c.Written, rev: e.Revision()}, true, nil
}

// subjectIndex returns the prefix of the index keys of sub's sessions. The
// subject is hashed: it may hold characters a key may not, and the key's
// length stays fixed.
func subjectIndex(sub string) string {
	sum := sha256.Sum256([]byte(sub))
	return kvSubject + hex.EncodeToString(sum[:]) + "."
}

// sessionWrite is what an operation on a session writes: the changed
// entry, and the events that report the change.
type sessionWrite struct {
	events []*bus.Event
	// keep publishes the events even if the entry could not be written
	// (revocations: better late than never), as change.keep does.
	keep bool
}

// changeSession runs fn on session sid as it is now (nil if there is no
// such session) and, if fn returns a write, stores the changed record with
// compare-and-set and publishes the write's events through the outbox. When
// another writer changed the session first, it reads it again and runs fn
// again; fn must start from the record it is given every time.
//
// The events are staged in the outbox before the entry is written (synced
// if the write is kept), so a crash in between publishes events of a
// change that may not have happened rather than losing those of one that
// did. Once the entry is written the
// change is made: if publishing then fails the events stay in the outbox
// for Run and changeSession returns an error wrapping errNotPublished.
// When the entry cannot be written the events are dropped and the error
// wraps errUnavailable, unless the write is kept: then it wraps
// errNotPublished.
func (s *Service) changeSession(ctx context.Context, sid string, fn func(sess *sessionRecord) (*sessionWrite, error)) ([]uint64, error) {
	for range maxSessionWrites {
		cur, err := s.sessions.get(ctx, sid)
		if err != nil {
			return nil, err
		}
		w, err := fn(cur.sess)
		if err != nil || w == nil {
			return nil, err
		}
		st, err := s.outbox.stage(w.events, w.keep)
		if err != nil {
			return nil, err
		}
		err = s.sessions.update(ctx, cur.sess, cur.rev)
		switch {
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			s.outbox.drop(st)
			continue
		case err != nil && w.keep && len(w.events) > 0:
			return nil, fmt.Errorf("%w: %w", errNotPublished, err)
		case err != nil:
			s.outbox.drop(st)
			return nil, fmt.Errorf("%w: %w", errUnavailable, err)
		}
		return s.outbox.send(ctx, st)
	}
	return nil, fmt.Errorf("session %s changed by %d other writers in a row: %w", sid, maxSessionWrites, errUnavailable)
}
