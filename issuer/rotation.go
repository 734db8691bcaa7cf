package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// janitorEvery is how often retired keys are checked for removal.
const janitorEvery = 5 * time.Second

// KeyRotation is the answer to POST /v1/keys/rotate.
type KeyRotation struct {
	// Current signs from now on; it was published one rotation ago.
	Current string `json:"kid"`
	// Retired signed until now and verifies until its last token expires.
	Retired string `json:"retired"`
	// Next is published now and signs after the next rotation.
	Next string `json:"next"`
}

// RotateKey rotates the signing key now: the pre-published next key starts
// signing, the current one retires, and a new next key is published.
func (s *Service) RotateKey(ctx context.Context, actor, source string) (*KeyRotation, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	return s.rotate(ctx, actor, source)
}

// rotate makes the next key current. Verifiers received the next key when
// it was made, one rotation ago, so no verifier sees a token signed with a
// key it has not received. The caller holds keyMu.
func (s *Service) rotate(ctx context.Context, actor, source string) (*KeyRotation, error) {
	fresh, err := s.keys.generate(s.cfg.Algorithm)
	if err != nil {
		return nil, err
	}
	if err := publishKey(ctx, s.conn, fresh); err != nil {
		return nil, errUnavailable
	}
	old, next := s.keys.Current(), s.keys.Next()
	now := s.now()
	_, err = s.outbox.commit(ctx, func(c *change) error {
		if err := c.put(keyRetiredKey+old.kid, now); err != nil {
			return err
		}
		c.emit(&bus.Event{ID: bus.NewID(), Type: bus.TypeKeyPublished, Time: now, Actor: actor,
			Key: &bus.Key{ID: fresh.kid, Algorithm: fresh.alg}})
		c.emit(&bus.Event{ID: bus.NewID(), Type: bus.TypeKeyRetired, Time: now, Actor: actor,
			Key: &bus.Key{ID: old.kid, Algorithm: old.alg}})
		c.emit(s.adminEvent(now, bus.TypeAdminKey, actor, source, "key.rotate", next.kid, ""))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.keys.setPointer(currentFile, next); err != nil {
		return nil, err
	}
	if err := s.keys.setPointer(nextFile, fresh); err != nil {
		return nil, err
	}
	s.log.Info("signing key rotated", "kid", next.kid, "retired", old.kid, "next", fresh.kid)
	return &KeyRotation{Current: next.kid, Retired: old.kid, Next: fresh.kid}, nil
}

// stopSigningWith makes sure kid neither signs now nor is next to sign,
// before it is revoked. The caller holds keyMu.
func (s *Service) stopSigningWith(ctx context.Context, kid string) error {
	switch kid {
	case s.keys.Current().kid:
		_, err := s.rotate(ctx, "herald", "")
		return err
	case s.keys.Next().kid:
		fresh, err := s.keys.generate(s.cfg.Algorithm)
		if err != nil {
			return err
		}
		if err := publishKey(ctx, s.conn, fresh); err != nil {
			return errUnavailable
		}
		return s.keys.setPointer(nextFile, fresh)
	}
	return nil
}

// removeKey deletes a key from HERALD_KEYS, from disk and from the
// retirement records. Failures are logged: verifiers already refuse a
// revoked key, and an expired one signs nothing that is still valid.
func (s *Service) removeKey(ctx context.Context, kid string) {
	kv, err := s.conn.Keys(ctx)
	if err == nil {
		err = kv.Delete(ctx, kid)
	}
	if err != nil {
		s.log.Error("key not removed from bucket", "kid", kid, "err", err)
	}
	if s.keys.Has(kid) {
		if err := s.keys.remove(kid); err != nil {
			s.log.Error("key not removed from disk", "kid", kid, "err", err)
		}
	}
	if err := s.state.Update(func(tx *store.Tx) error { tx.Delete(keyRetiredKey + kid); return nil }); err != nil {
		s.log.Error("key retirement record not removed", "kid", kid, "err", err)
	}
}

// rotateKeys rotates on the configured schedule and removes retired keys
// once every token they signed has expired, until ctx ends.
func (s *Service) rotateKeys(ctx context.Context) error {
	var tick <-chan time.Time
	if s.cfg.KeyRotation > 0 {
		t := time.NewTicker(s.cfg.KeyRotation)
		defer t.Stop()
		tick = t.C
	}
	janitor := time.NewTicker(janitorEvery)
	defer janitor.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			if _, err := s.RotateKey(ctx, "herald", ""); err != nil && ctx.Err() == nil {
				s.log.Error("scheduled key rotation", "err", err)
			}
		case <-s.keyWork.wake:
			if err := s.reactToKeyRevocations(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("react to key revocations", "err", err)
			}
		case <-janitor.C:
			if err := s.reactToKeyRevocations(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("react to key revocations", "err", err)
			}
			if err := s.removeExpiredKeys(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("remove expired keys", "err", err)
			}
		}
	}
}

// removeExpiredKeys removes retired keys whose last token has expired.
func (s *Service) removeExpiredKeys(ctx context.Context) error {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	now := s.now()
	var errs []error
	for _, k := range s.keys.All() {
		if k == s.keys.Current() || k == s.keys.Next() {
			continue
		}
		var retired time.Time
		b, ok, err := s.state.Get(keyRetiredKey + k.kid)
		if err == nil && ok {
			err = decodeJSON(b, &retired)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			// A key on disk that is neither current nor next, with no
			// record (e.g. made by a rotation that did not finish).
			if err := s.state.Update(func(tx *store.Tx) error { return putJSON(tx, keyRetiredKey+k.kid, now) }); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if now.Before(retired.Add(s.cfg.revocationLifetime())) {
			continue
		}
		_, err = s.outbox.commit(ctx, func(c *change) error {
			c.emit(&bus.Event{ID: bus.NewID(), Type: bus.TypeKeyRemoved, Time: now, Actor: "herald",
				Key: &bus.Key{ID: k.kid, Algorithm: k.alg}})
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", k.kid, err))
			continue
		}
		s.removeKey(ctx, k.kid)
		s.log.Info("retired key removed: its last token has expired", "kid", k.kid)
	}
	return errors.Join(errs...)
}
