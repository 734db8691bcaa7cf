package issuer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// keyAllHandled is the state key of the time of the last revocation of
// kind all whose keys this replica replaced.
const keyAllHandled = "keys/all"

// keyWork holds what the revocation stream asked of this replica's keys:
// its own keys revoked (through any replica), and the latest revocation
// of kind all. The follower notes them; the key loop acts on them.
type keyWork struct {
	mu   sync.Mutex
	kids map[string]bool // own keys only, so at most the keyring's size
	all  time.Time
	wake chan struct{} // capacity 1
}

// noteRevocations is the follower's OnApply: it queues the revocations
// that concern this replica's keys and wakes the key loop. It does not
// block.
func (s *Service) noteRevocations(revs []*bus.Revocation) {
	w := &s.keyWork
	queued := false
	w.mu.Lock()
	for _, r := range revs {
		switch r.Kind {
		case bus.KindKey:
			for _, kid := range r.AllValues() {
				if s.keys != nil && s.keys.Has(kid) {
					if w.kids == nil {
						w.kids = make(map[string]bool)
					}
					w.kids[kid], queued = true, true
				}
			}
		case bus.KindAll:
			if r.At.After(w.all) {
				w.all, queued = r.At, true
			}
		}
	}
	w.mu.Unlock()
	if queued {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// reactToKeyRevocations drops this replica's revoked keys (those queued by
// the follower, and those the key set learned revoked from HERALD_KEYS):
// it stops signing with them at once, records them revoked for good and
// deletes them. After a revocation of kind all made through another
// replica, it replaces its current and next keys too.
func (s *Service) reactToKeyRevocations(ctx context.Context) error {
	w := &s.keyWork
	w.mu.Lock()
	kids, all := w.kids, w.all
	w.kids = nil
	w.mu.Unlock()
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	for _, k := range s.keys.All() {
		if s.trusted.Revoked(k.kid) {
			if kids == nil {
				kids = make(map[string]bool)
			}
			kids[k.kid] = true
		}
	}
	var errs []error
	for kid := range kids {
		if err := s.dropRevokedKey(ctx, kid); err != nil {
			errs = append(errs, err)
			s.requeueKey(kid)
		}
	}
	if !all.IsZero() {
		if err := s.replaceKeysRevokedBy(ctx, all); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) requeueKey(kid string) {
	w := &s.keyWork
	w.mu.Lock()
	if w.kids == nil {
		w.kids = make(map[string]bool)
	}
	w.kids[kid] = true
	w.mu.Unlock()
}

// dropRevokedKey makes sure revoked key kid, if this replica holds it,
// neither signs nor is next to sign, records it revoked and deletes it.
// The caller holds keyMu.
func (s *Service) dropRevokedKey(ctx context.Context, kid string) error {
	if !s.keys.Has(kid) {
		return nil
	}
	if err := s.stopSigningWith(ctx, kid); err != nil {
		return fmt.Errorf("stop signing with revoked key %s: %w", kid, err)
	}
	if err := s.conn.PublishKeyRevoked(ctx, bus.RevokedKey{Kid: kid, At: s.now()}); err != nil {
		return err
	}
	s.removeKey(ctx, kid)
	s.log.Warn("own signing key revoked: rotated and deleted", "kid", kid, "current", s.keys.Current().kid)
	return nil
}

// recordRevokedKey records in HERALD_KEYS that kid is revoked for good,
// logging a failure: every replica holding kid records it again when it
// reacts, and verifiers refuse it meanwhile from their denylists.
func (s *Service) recordRevokedKey(ctx context.Context, kid string, at time.Time, reason string) {
	if err := s.conn.PublishKeyRevoked(ctx, bus.RevokedKey{Kid: kid, At: at, Reason: reason}); err != nil {
		s.log.Error("revoked key not recorded", "kid", kid, "err", err)
	}
}

// replaceKeysRevokedBy replaces the current and next keys after a
// revocation of kind all made at `at` through another replica, unless
// this replica already did for that revocation or made its keys after
// it. The caller holds keyMu.
func (s *Service) replaceKeysRevokedBy(ctx context.Context, at time.Time) error {
	var done time.Time
	b, ok, err := s.state.Get(keyAllHandled)
	if err == nil && ok {
		err = decodeJSON(b, &done)
	}
	if err != nil {
		return fmt.Errorf("replace keys after revoke all: %w", err)
	}
	if !at.After(done) || !s.keys.Current().created.Before(at) {
		return nil
	}
	if _, err := s.replaceAllKeys(ctx, "herald", ""); err != nil {
		return fmt.Errorf("replace keys after revoke all: %w", err)
	}
	return s.allHandled(at)
}

// allHandled records that the keys were replaced for the revocation of
// kind all made at `at`.
func (s *Service) allHandled(at time.Time) error {
	return s.state.Update(func(tx *store.Tx) error { return putJSON(tx, keyAllHandled, at) })
}

// keyWait bounds how long replaceAllKeys waits to see its new keys in
// HERALD_KEYS before it signs with them.
const keyWait = 2 * time.Second

// replaceAllKeys replaces both the current and the next key with fresh
// ones and removes every other key this replica holds: after a theft of
// the key files, the pre-published next key is the thief's too. The new
// keys are published first, then sign, then the old ones are recorded
// revoked and removed from HERALD_KEYS and disk, so that no verifier is
// ever without the key that signs new tokens. It returns the new current
// kid. The caller holds keyMu.
func (s *Service) replaceAllKeys(ctx context.Context, actor, source string) (string, error) {
	old := s.keys.All()
	cur, err := s.keys.generate(s.cfg.Algorithm)
	if err != nil {
		return "", err
	}
	next, err := s.keys.generate(s.cfg.Algorithm)
	if err != nil {
		return "", err
	}
	for _, k := range []*signingKey{cur, next} {
		if err := publishKey(ctx, s.conn, k); err != nil {
			return "", errUnavailable
		}
	}
	s.waitTrusted(ctx, cur.kid)
	if err := s.keys.setPointer(currentFile, cur); err != nil {
		return "", err
	}
	if err := s.keys.setPointer(nextFile, next); err != nil {
		return "", err
	}
	now := s.now()
	_, err = s.outbox.commit(ctx, func(c *change) error {
		for _, k := range []*signingKey{cur, next} {
			c.emit(&bus.Event{ID: bus.NewID(), Type: bus.TypeKeyPublished, Time: now, Actor: actor,
				Key: &bus.Key{ID: k.kid, Algorithm: k.alg}})
		}
		for _, k := range old {
			// Verifiers drop the old keys from the ordered stream too, and
			// say why they refuse their tokens.
			c.emit(s.revocationEvent(now, actor, bus.KindKey, k.kid, "revoke all", ""))
			c.emit(&bus.Event{ID: bus.NewID(), Type: bus.TypeKeyRemoved, Time: now, Actor: actor,
				Key: &bus.Key{ID: k.kid, Algorithm: k.alg}})
		}
		c.emit(s.adminEvent(now, bus.TypeAdminKey, actor, source, "key.replace_all", cur.kid, ""))
		return nil
	})
	if err != nil {
		s.log.Error("key replacement not published", "err", err)
	}
	for _, k := range old {
		s.recordRevokedKey(ctx, k.kid, now, "revoke all")
		s.removeKey(ctx, k.kid)
	}
	s.log.Warn("every signing key replaced", "kid", cur.kid, "next", next.kid, "removed", len(old))
	return cur.kid, nil
}

// waitTrusted waits, at most keyWait, until the issuer's own view of
// HERALD_KEYS holds kid: verifiers watch the same bucket, so they hold it
// about as soon.
func (s *Service) waitTrusted(ctx context.Context, kid string) {
	ctx, cancel := context.WithTimeout(ctx, keyWait)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !s.trustedHas(kid) {
		select {
		case <-ctx.Done():
			s.log.Warn("new key not seen in the bucket in time; signing with it anyway", "kid", kid)
			return
		case <-t.C:
		}
	}
}

func (s *Service) trustedHas(kid string) bool {
	_, ok := s.trusted.Get(kid)
	return ok
}

// checkTokenKeys refuses a key revocation that names anything but token
// keys: an event key (by kid or entry name) or a record of the bucket.
// Event keys are revoked only with a root key (herald keys event revoke).
func (s *Service) checkTokenKeys(kids []string) error {
	for _, kid := range kids {
		for _, prefix := range []string{bus.EventKeyPrefix, bus.RevokedKeyPrefix, bus.EventCertPrefix, bus.TrustPrefix, bus.ExternalKeyPrefix} {
			if strings.HasPrefix(kid, prefix) {
				return badRequest(fmt.Sprintf("key %q is not a token key: event keys are revoked with a root key (herald keys event revoke)", kid))
			}
		}
		if _, _, ok := s.trusted.EventKey(kid); ok || kid == s.eventKey.kid || s.trusted.Untrusted(kid) {
			return badRequest(fmt.Sprintf("key %q is an event key: event keys are revoked with a root key (herald keys event revoke)", kid))
		}
	}
	return nil
}
