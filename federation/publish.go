package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// maxBucketEntries bounds the entries of one prefix read from the bucket.
const maxBucketEntries = 16 << 10

// publish makes the bucket hold st's trust entry and the keys of its last
// good key set: new and changed keys are written, keys an admin revoked
// removed at once, and keys the provider dropped removed once they have
// been missing for the grace period. Entries are compared by content,
// not bytes (every signature differs), so replicas publishing the same
// keys write nothing. Writes are compare-and-set on the revision read:
// when two replicas race, one write is enough.
func (f *Federation) publish(ctx context.Context, st *issuerState, keys []key) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.BusTimeout)
	defer cancel()
	is := st.cfg
	kv, err := f.cfg.Conn.Keys(ctx)
	if err != nil {
		return err
	}
	if err := f.publishTrust(ctx, kv, is); err != nil {
		return err
	}
	entries, err := readEntries(ctx, kv, bus.ExternalKeyPrefix+"*")
	if err != nil {
		return err
	}
	type current struct {
		entry bus.KeyEntry
		rev   uint64
		ok    bool // opened with a trusted event key
	}
	have := make(map[string]current)
	for _, e := range entries {
		ke, err := bus.OpenKeyEntry(e.Key(), e.Value(), f.cfg.EventKeys)
		if err == nil && ke.Issuer == is.URL {
			have[e.Key()] = current{entry: ke, rev: e.Revision(), ok: true}
		} else if err != nil {
			have[e.Key()] = current{rev: e.Revision()} // rewritten if it is one of ours
		}
	}
	life := time.Duration(is.Trust().MaxTTL) * time.Second
	want := make(map[string]bool, len(keys))
	var errs []error
	for _, k := range keys {
		if f.cfg.Revoked(is.URL, k.jwk.Kid) {
			continue
		}
		name := bus.ExternalKeyName(is.URL, k.jwk)
		want[name] = true
		cur, exists := have[name]
		if cur.ok && cur.entry.JWK == k.jwk && cur.entry.MaxLifetime == life {
			continue
		}
		_, value, err := f.cfg.Signer.SignExternalKey(is.URL, k.jwk, is.MaxTokenLifetime)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := put(ctx, kv, name, value, exists, cur.rev); err != nil {
			errs = append(errs, fmt.Errorf("publish key %.64q of %s: %w", k.jwk.Kid, is.URL, err))
		}
	}

	grace := f.cfg.Grace
	if grace == 0 {
		grace = is.MaxTokenLifetime
	}
	now := f.now()
	st.mu.Lock()
	missing := make(map[string]time.Time)
	for name, cur := range have {
		if want[name] || !cur.ok {
			continue
		}
		since, seen := st.missing[name]
		if !seen {
			since = now
		}
		if !f.cfg.Revoked(is.URL, cur.entry.JWK.Kid) && now.Sub(since) < grace {
			missing[name] = since
			continue
		}
		if err := kv.Delete(ctx, name, jetstream.LastRevision(cur.rev)); err != nil && !conflict(err) {
			errs = append(errs, fmt.Errorf("remove key %.64q of %s: %w", cur.entry.JWK.Kid, is.URL, err))
			missing[name] = since
		}
	}
	st.missing = missing
	st.mu.Unlock()
	return errors.Join(errs...)
}

// publishTrust makes the bucket hold is's trust entry.
func (f *Federation) publishTrust(ctx context.Context, kv jetstream.KeyValue, is Issuer) error {
	t := is.Trust()
	want, err := json.Marshal(t)
	if err != nil {
		return err
	}
	name := bus.TrustName(is.URL)
	var rev uint64
	exists := false
	switch e, err := kv.Get(ctx, name); {
	case err == nil:
		exists, rev = true, e.Revision()
		if cur, err := bus.OpenTrust(name, e.Value(), f.cfg.EventKeys); err == nil {
			if got, err := json.Marshal(cur); err == nil && bytes.Equal(got, want) {
				return nil
			}
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("read trust entry of %s: %w", is.URL, err)
	}
	_, value, err := f.cfg.Signer.SignTrust(t)
	if err != nil {
		return err
	}
	if err := put(ctx, kv, name, value, exists, rev); err != nil {
		return fmt.Errorf("publish trust entry of %s: %w", is.URL, err)
	}
	return nil
}

// put writes name: created if it did not exist, else updated from
// revision rev. Losing the race to another replica is not an error: it
// wrote the same.
func put(ctx context.Context, kv jetstream.KeyValue, name string, value []byte, exists bool, rev uint64) error {
	var err error
	if exists {
		_, err = kv.Update(ctx, name, value, rev)
	} else {
		_, err = kv.Create(ctx, name, value)
	}
	if conflict(err) {
		return nil
	}
	return err
}

// conflict reports whether err is a lost compare-and-set.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// readEntries returns the live entries of kv whose names match filter.
func readEntries(ctx context.Context, kv jetstream.KeyValue, filter string) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", bus.BucketKeys, filter, err)
	}
	defer func() { _ = w.Stop() }()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("read %s %s: watch ended", bus.BucketKeys, filter)
			}
			if e == nil {
				return out, nil
			}
			if len(out) == maxBucketEntries {
				return nil, fmt.Errorf("read %s %s: more than %d entries", bus.BucketKeys, filter, maxBucketEntries)
			}
			out = append(out, e)
		}
	}
}

// prune removes from the bucket the trust entries and keys of external
// issuers this deployment no longer trusts for tokens: trust entries
// under another name than a configured token issuer's, and keys bound to
// an issuer that is not one. Entries it cannot open are left alone.
func (f *Federation) prune(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.BusTimeout)
	defer cancel()
	kv, err := f.cfg.Conn.Keys(ctx)
	if err != nil {
		return err
	}
	trusted := make(map[string]bool)
	names := make(map[string]bool)
	for _, st := range f.issuers {
		if st.cfg.Tokens {
			trusted[st.cfg.URL] = true
			names[bus.TrustName(st.cfg.URL)] = true
		}
	}
	var errs []error
	del := func(name string, rev uint64) {
		if err := kv.Delete(ctx, name, jetstream.LastRevision(rev)); err != nil && !conflict(err) {
			errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
		}
	}
	trusts, err := readEntries(ctx, kv, bus.TrustPrefix+"*")
	if err != nil {
		return err
	}
	for _, e := range trusts {
		if !names[e.Key()] {
			del(e.Key(), e.Revision())
		}
	}
	keys, err := readEntries(ctx, kv, bus.ExternalKeyPrefix+"*")
	if err != nil {
		return err
	}
	for _, e := range keys {
		ke, err := bus.OpenKeyEntry(e.Key(), e.Value(), f.cfg.EventKeys)
		if err == nil && !trusted[ke.Issuer] {
			del(e.Key(), e.Revision())
		}
	}
	return errors.Join(errs...)
}

// pruneLoop prunes once, retrying with backoff until it succeeds or ctx
// ends.
func (f *Federation) pruneLoop(ctx context.Context) {
	wait := f.cfg.RetryMin
	for {
		err := f.prune(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		f.log.Warn("entries of issuers no longer trusted not removed; retrying", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, f.cfg.RetryMax)
	}
}
